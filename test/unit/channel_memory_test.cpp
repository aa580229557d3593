// colo-node's channel memory (broker/channel_memory.h): sealed so that no pod can shrink or grow
// it, bells a Unix stream socketpair, and hugepage channels kept within the pod's share for as
// long as their memory lives.
#include "broker/channel_memory.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace colo::node {
namespace {

TEST(ChannelMemory, OrdinaryMemoryIsSealedAndTheBellsAreAUnixStreamPair) {
  HugepageLedger ledger;
  auto m = makeChannelMemory(1 << 20, "pod", 0, "", ledger);
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

TEST(ChannelMemory, HugepageShareIsChargedPerPod) {
  HugepageLedger ledger;
  constexpr std::uint64_t kMi = 1 << 20;
  EXPECT_TRUE(ledger.charge("a", 8 * kMi, 2 * kMi, 4 * kMi));   // 2 in the mount + 4
  EXPECT_FALSE(ledger.charge("a", 8 * kMi, 2 * kMi, 4 * kMi));  // would be 10 of 8
  EXPECT_TRUE(ledger.charge("a", 8 * kMi, 2 * kMi, 2 * kMi));   // exactly 8
  EXPECT_TRUE(ledger.charge("b", 8 * kMi, 0, 8 * kMi));         // another pod's share is its own
  EXPECT_EQ(ledger.charged("a"), 6 * kMi);
  ledger.refund("a", 4 * kMi);  // a segment that was never made
  EXPECT_EQ(ledger.charged("a"), 2 * kMi);
  EXPECT_FALSE(ledger.charge("a", 8 * kMi, 9 * kMi, 2 * kMi));  // the mount alone is over
  EXPECT_EQ(ledger.charged("b"), 8 * kMi);
}

// The issue-13 tester's bypass: ask, close the asking connection, keep the memory, ask again. The
// charge now ends only when the kernel has freed the memory: not while a descriptor, a mapping or
// an O_PATH reference to it is left anywhere. (An ordinary memfd: the same inode life as hugetlb.)
TEST(ChannelMemory, AHugepageChargeLastsAsLongAsTheMemoryDoes) {
  HugepageLedger ledger;
  constexpr std::uint64_t kMi = 1 << 20;
  UniqueFd mem(::memfd_create("colo-channel-test", MFD_CLOEXEC));
  ASSERT_TRUE(mem);
  ASSERT_EQ(::ftruncate(mem.get(), 2 * kMi), 0);
  ASSERT_TRUE(ledger.charge("a", 4 * kMi, 0, 2 * kMi));
  ASSERT_TRUE(ledger.follow(mem.get(), "a", 2 * kMi));
  EXPECT_EQ(ledger.followed(), 1u);
  UniqueFd copy(::fcntl(mem.get(), F_DUPFD_CLOEXEC, 0));  // handed to the pod
  void* map = ::mmap(nullptr, 2 * kMi, PROT_READ | PROT_WRITE, MAP_SHARED, mem.get(), 0);
  ASSERT_NE(map, MAP_FAILED);
  const std::string self = "/proc/self/fd/" + std::to_string(mem.get());
  UniqueFd opath(::open(self.c_str(), O_PATH | O_CLOEXEC));
  ASSERT_TRUE(opath);
  mem.reset();  // colo-node's own descriptor goes once the reply is sent
  EXPECT_EQ(ledger.charged("a"), 2 * kMi);
  copy.reset();  // the pod closes its descriptor...
  EXPECT_EQ(ledger.charged("a"), 2 * kMi);
  ASSERT_EQ(::munmap(map, 2 * kMi), 0);  // ...and its mapping...
  EXPECT_EQ(ledger.charged("a"), 2 * kMi);
  EXPECT_FALSE(ledger.charge("a", 4 * kMi, 0, 4 * kMi));  // still only 2 MiB of room
  opath.reset();  // ...and the last reference: the kernel frees the memory, the charge goes
  EXPECT_EQ(ledger.charged("a"), 0u);
  EXPECT_EQ(ledger.followed(), 0u);
  EXPECT_TRUE(ledger.charge("a", 4 * kMi, 0, 4 * kMi));
}

// With hugepages from the node's pool (skipped when it has none free): a channel's memory is
// followed, and the share comes back only when every copy is closed.
TEST(ChannelMemory, HugepageChannelsStayWithinTheShareWhateverTheConnections) {
  HugepageLedger ledger;
  constexpr std::uint64_t kMi = 1 << 20;
  auto first = makeChannelMemory(kMi, "pod", 2 * kMi, "", ledger);
  ASSERT_TRUE(first) << first.error().str();
  if (first->memory != "hugepages") GTEST_SKIP() << "no free hugepage in the node's pool: " << first->note;
  UniqueFd kept(::fcntl(first->mem.get(), F_DUPFD_CLOEXEC, 0));
  first->mem.reset();
  auto second = makeChannelMemory(kMi, "pod", 2 * kMi, "", ledger);  // a new connection, same pod
  ASSERT_TRUE(second) << second.error().str();
  EXPECT_EQ(second->memory, "memfd");
  EXPECT_EQ(second->fallback, "pod_share");
  kept.reset();
  auto third = makeChannelMemory(kMi, "pod", 2 * kMi, "", ledger);
  ASSERT_TRUE(third) << third.error().str();
  EXPECT_EQ(third->memory, "hugepages") << third->note;
}

TEST(ChannelMemory, AFullShareFallsBackToOrdinaryMemoryAndSaysWhy) {
  HugepageLedger ledger;
  ASSERT_TRUE(ledger.charge("pod", 2 << 20, 0, 2 << 20));  // the whole share already used
  auto m = makeChannelMemory(1 << 20, "pod", 2 << 20, "", ledger);
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_EQ(m->memory, "memfd");
  EXPECT_EQ(m->fallback, "pod_share");
  EXPECT_NE(m->note.find("share has no room"), std::string::npos) << m->note;
  EXPECT_EQ(::fcntl(m->mem.get(), F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
}

}  // namespace
}  // namespace colo::node
