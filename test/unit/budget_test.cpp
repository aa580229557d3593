// What a flood may cost colo-node (the issue-13 tester's findings): rate-limited warnings, and
// the descriptor budget that keeps the CNI path's reserve whatever pods do.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "colo/common/wire.h"
#include "log/log_limiter.h"
#include "server/fd_budget.h"
#include "server/seqpacket_server.h"
#include "test_util.h"

namespace colo::node {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

TEST(LogLimiter, AFloodIsAFewLinesAndOneSummaryWithTheExactCount) {
  std::vector<std::pair<std::string, std::uint64_t>> summaries;
  LogLimiter lim([&](const std::string& k, std::uint64_t n) { summaries.emplace_back(k, n); }, 3, 100ms);
  const auto t0 = LogLimiter::Clock::now();
  int logged = 0;
  for (int i = 0; i < 1000; ++i) logged += lim.allow("refused uid 65534", t0) ? 1 : 0;
  EXPECT_EQ(logged, 3);
  EXPECT_TRUE(lim.allow("denied pod b", t0));  // another cause has its own lines
  EXPECT_EQ(lim.suppressedTotal(), 997u);
  EXPECT_TRUE(summaries.empty());
  lim.sweep(t0 + 50ms);  // the window has not ended
  EXPECT_TRUE(summaries.empty());
  // The next window: the summary of the last one first, then lines again.
  EXPECT_TRUE(lim.allow("refused uid 65534", t0 + 150ms));
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_EQ(summaries[0], std::make_pair(std::string("refused uid 65534"), std::uint64_t{997}));
  // A flood that stops is summarised by the sweep; quiet windows say nothing.
  for (int i = 0; i < 10; ++i) (void)lim.allow("refused uid 65534", t0 + 160ms);
  lim.sweep(t0 + 400ms);
  ASSERT_EQ(summaries.size(), 2u);
  EXPECT_EQ(summaries[1].second, 8u);
}

TEST(LogLimiter, CausesAreBoundedInNumber) {
  std::uint64_t other = 0;
  LogLimiter lim([&](const std::string& k, std::uint64_t n) { other += k == "other" ? n : 0; }, 1, 100ms, 4);
  const auto t0 = LogLimiter::Clock::now();
  for (int i = 0; i < 100; ++i) (void)lim.allow("pod " + std::to_string(i), t0);
  lim.sweep(t0 + 200ms);
  EXPECT_EQ(other, 95u);  // 4 keys had a line each, the 96 beyond them shared one key (1 line)
}

TEST(FdBudget, OpenAndFreeDescriptorsFollowWhatIsOpen) {
  const std::size_t open0 = openDescriptors(), free0 = freeDescriptors();
  ASSERT_GT(open0, 2u);
  {
    UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC)), b(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(openDescriptors(), open0 + 2);
    EXPECT_EQ(freeDescriptors(), free0 - 2);
  }
  EXPECT_EQ(openDescriptors(), open0);
}

class BudgetServer : public ::testing::Test {
 protected:
  test::TempDir dir;
  Metrics metrics;
  std::unique_ptr<SeqpacketServer> server;
  std::string path() const { return dir.path() + "/s.sock"; }
  void start(ServerLimits limits, AcceptCheck check = nullptr) {
    server = std::make_unique<SeqpacketServer>("t", metrics, [](wire::Message& m, const ConnInfo&) -> Reply { return proto::okReply(m.body); },
                                               std::move(check), nullptr, limits);
    ASSERT_TRUE(server->start().ok());
    ASSERT_TRUE(server->listen(path(), 0600, "pod-a").ok());
  }
  template <class F>
  bool eventually(F pred) {
    for (int i = 0; i < 300; ++i) {
      if (pred()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return pred();
  }
};

// Fewer descriptors left than the reserve: a connection is closed at once, unanswered and not
// kept to answer (it would cost a descriptor for a second), and counted.
TEST_F(BudgetServer, ConnectionsBeyondTheDescriptorBudgetAreClosedAtOnce) {
  ServerLimits l;
  if (freeDescriptors() > (std::size_t{1} << 30)) GTEST_SKIP() << "RLIMIT_NOFILE is unlimited";
  l.fdReserve = freeDescriptors() + 100000;
  start(l);
  auto c = wire::connectUnix(path());
  ASSERT_TRUE(c.ok());
  auto r = wire::call(c->get(), {{"v", 1}, {"id", 1}, {"op", "x"}}, {}, 2s);
  EXPECT_FALSE(r.ok());  // closed, no reply
  EXPECT_TRUE(eventually([&] { return metrics.get("colo_wire_connections_rejected_total", {{"socket", "t"}, {"reason", "fd_budget"}}) >= 1; }));
  EXPECT_EQ(metrics.get("colo_wire_connections", {{"socket", "t"}}), 0);
}

TEST_F(BudgetServer, WithinTheBudgetConnectionsAreServed) {
  ServerLimits l;
  l.fdReserve = 16;
  start(l);
  auto c = wire::connectUnix(path());
  ASSERT_TRUE(c.ok());
  auto r = wire::call(c->get(), {{"v", 1}, {"id", 1}, {"op", "x"}}, {}, 2s);
  ASSERT_TRUE(r.ok()) << r.error().str();
  EXPECT_EQ(r->body["ok"], true);
}

// The admission check sees the connecting process's pidfd; once admission is decided it is
// closed: an admitted connection costs colo-node one descriptor, not two.
TEST_F(BudgetServer, APidfdLivesOnlyAsLongAsTheAdmissionCheck) {
  std::atomic<int> checked{0}, withPidfd{0};
  start(ServerLimits{}, [&](const ConnInfo& c) -> Status {
    ++checked;
    if (c.pidfd >= 0 && ::fcntl(c.pidfd, F_GETFD) >= 0) ++withPidfd;
    return {};
  });
  const std::size_t open0 = openDescriptors();
  std::vector<UniqueFd> held;
  for (int i = 0; i < 10; ++i) {
    auto c = wire::connectUnix(path());
    ASSERT_TRUE(c.ok());
    auto r = wire::call(c->get(), {{"v", 1}, {"id", i}, {"op", "x"}}, {}, 2s);
    ASSERT_TRUE(r.ok());
    held.push_back(std::move(*c));
  }
  EXPECT_EQ(checked.load(), 10);
  if (withPidfd.load() == 0) GTEST_SKIP() << "this kernel has no SO_PEERPIDFD";
  EXPECT_EQ(withPidfd.load(), 10);
  EXPECT_EQ(openDescriptors(), open0 + 20);  // our 10 ends and the server's 10: no pidfd kept
}

}  // namespace
}  // namespace colo::node
