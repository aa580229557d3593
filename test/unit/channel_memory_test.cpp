// colo-node's channel memory (broker/channel_memory.h): sealed so that no pod can shrink or grow
// it, bells a Unix stream socketpair, and hugepage channels kept within the pod's share.
#include "broker/channel_memory.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace colo::node {
namespace {

TEST(ChannelMemory, OrdinaryMemoryIsSealedAndTheBellsAreAUnixStreamPair) {
  HugepageLedger ledger;
  auto m = makeChannelMemory(1 << 20, "pod", 1, 0, "", ledger);
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_EQ(m->memory, "memfd");
  EXPECT_EQ(m->size, 1u << 20);
  EXPECT_NE(m->capacity, 0u);
  EXPECT_EQ(::fcntl(m->mem.get(), F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_NE(::ftruncate(m->mem.get(), 0), 0);  // what the hostile peer did: refused now
  EXPECT_EQ(errno, EPERM);
  EXPECT_NE(::ftruncate(m->mem.get(), 4 << 20), 0);
  EXPECT_NE(::fcntl(m->mem.get(), F_ADD_SEALS, F_SEAL_WRITE), 0);  // and no more seals either
  for (int fd : {m->bell0.get(), m->bell1.get()}) {
    int type = 0, domain = 0;
    socklen_t len = sizeof(int);
    ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len), 0);
    ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len), 0);
    EXPECT_EQ(type, SOCK_STREAM);
    EXPECT_EQ(domain, AF_UNIX);
  }
  const char one = 1;  // the two ends of one pair
  ASSERT_EQ(::send(m->bell0.get(), &one, 1, MSG_DONTWAIT), 1);
  char got = 0;
  EXPECT_EQ(::recv(m->bell1.get(), &got, 1, MSG_DONTWAIT), 1);
}

TEST(ChannelMemory, HugepageShareIsChargedPerConnectionAndRefundedWhenItCloses) {
  HugepageLedger ledger;
  constexpr std::uint64_t kMi = 1 << 20;
  EXPECT_TRUE(ledger.charge("a", 1, 8 * kMi, 2 * kMi, 4 * kMi));   // 2 in the mount + 4
  EXPECT_FALSE(ledger.charge("a", 2, 8 * kMi, 2 * kMi, 4 * kMi));  // would be 10 of 8
  EXPECT_TRUE(ledger.charge("a", 2, 8 * kMi, 2 * kMi, 2 * kMi));   // exactly 8
  EXPECT_TRUE(ledger.charge("b", 3, 8 * kMi, 0, 8 * kMi));         // another pod's share is its own
  EXPECT_EQ(ledger.charged("a"), 6 * kMi);
  ledger.connectionClosed(1);
  EXPECT_EQ(ledger.charged("a"), 2 * kMi);
  EXPECT_TRUE(ledger.charge("a", 4, 8 * kMi, 2 * kMi, 4 * kMi));
  EXPECT_FALSE(ledger.charge("a", 4, 8 * kMi, 9 * kMi, 0 + 2 * kMi));  // the mount alone is over
  ledger.forgetMissing([](const std::string& pod) { return pod == "a"; });
  EXPECT_EQ(ledger.charged("b"), 0u);
}

TEST(ChannelMemory, AFullShareFallsBackToOrdinaryMemoryAndSaysWhy) {
  HugepageLedger ledger;
  ASSERT_TRUE(ledger.charge("pod", 7, 2 << 20, 0, 2 << 20));  // the whole share already used
  auto m = makeChannelMemory(1 << 20, "pod", 8, 2 << 20, "", ledger);
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_EQ(m->memory, "memfd");
  EXPECT_EQ(m->fallback, "pod_share");
  EXPECT_NE(m->note.find("share has no room"), std::string::npos) << m->note;
  EXPECT_EQ(::fcntl(m->mem.get(), F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
}

}  // namespace
}  // namespace colo::node
