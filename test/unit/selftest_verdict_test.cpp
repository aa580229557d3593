// What a self-test result allows (every pod, declared pods only, none), and the report
// `colo-node check-kernel` prints. No kernel needed.
#include <gtest/gtest.h>

#include "datapath/check_kernel.h"
#include "datapath/selftest.h"

using namespace colo::node;
using V = SelfTestResult::Verdict;

namespace {
SelfTestResult result(std::map<std::string, std::string> checks) {
  SelfTestResult r;
  r.checks = std::move(checks);
  return r;
}
}  // namespace

TEST(SelfTestVerdict, EveryCheckPassedSplicesEveryPod) {
  auto r = result({{"integrity", "ok"}, {"blocking_read", "ok"}, {"guard", "ok"}, {"integrity_ipv6", "ok"}});
  EXPECT_EQ(r.verdict(), V::Full);
  EXPECT_TRUE(r.passed());
  EXPECT_TRUE(r.guardPassed());
}

TEST(SelfTestVerdict, OnlyCoveredFailuresAllowDeclaredPods) {
  for (const char* c : {"blocking_read", "blocking_read_signal_ipv6", "blocking_read_rst", "fionread_normal_path_ipv6", "splice_read",
                        "splice_read_ipv6", "urgent_data", "urgent_data_ipv6"}) {
    auto r = result({{"integrity", "ok"}, {"poll", "ok"}, {c, "EAGAIN"}, {"guard", "ok"}});
    EXPECT_EQ(r.verdict(), V::PerPod) << c;
    EXPECT_FALSE(r.passed()) << c;
    EXPECT_EQ(r.failedNames(true), std::string(c).substr(0, std::string(c).rfind("_ipv6") == std::string::npos ? std::string::npos : std::string(c).rfind("_ipv6")));
  }
}

TEST(SelfTestVerdict, AnUncoveredFailureSplicesNothing) {
  for (const char* c : {"integrity", "poll", "epoll_ipv6", "fionread", "half_close", "rst", "sendfile", "setup"}) {
    auto r = result({{"blocking_read", "EAGAIN"}, {c, "broken"}, {"guard", "ok"}});
    EXPECT_EQ(r.verdict(), V::None) << c;
  }
  EXPECT_EQ(result({}).verdict(), V::None);  // nothing ran
}

TEST(SelfTestVerdict, TheGuardIsNotASpliceCheck) {
  auto r = result({{"integrity", "ok"}, {"guard", "the guard is not loaded"}});
  EXPECT_EQ(r.verdict(), V::Full);
  EXPECT_FALSE(r.guardPassed());
  EXPECT_EQ(r.spliceFailures(), "");
  EXPECT_NE(r.guardFailures().find("not loaded"), std::string::npos);
  EXPECT_FALSE(result({{"integrity", "ok"}}).guardPassed());  // not run is not passed
}

TEST(CheckKernelReport, SaysWhatFailedAndWhatItMeans) {
  auto r = result({{"integrity", "ok"}, {"blocking_read_rst", "returned EAGAIN instead of ECONNRESET"}, {"guard", "ok"}});
  const auto text = selfTestReport(r, "loaded: tracepoint");
  EXPECT_NE(text.find("  integrity                  ok\n"), std::string::npos) << text;
  EXPECT_NE(text.find("blocking_read_rst          FAIL: returned EAGAIN instead of ECONNRESET [covered by colo.dev/splice]"), std::string::npos) << text;
  EXPECT_NE(text.find("verdict: only checks that colo.dev/splice covers failed"), std::string::npos) << text;
  EXPECT_EQ(text.find("but the guard failed"), std::string::npos) << text;
  r.checks["guard"] = "not loaded";
  EXPECT_NE(selfTestReport(r, "cannot load").find("but the guard failed, so it splices none"), std::string::npos);
  r.checks["poll"] = "no wake-up";
  EXPECT_NE(selfTestReport(r, "x").find("splices nothing on this kernel"), std::string::npos);
}
