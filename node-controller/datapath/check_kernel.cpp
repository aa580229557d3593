#include "datapath/check_kernel.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "colo/common/files.h"
#include "datapath/datapath.h"

namespace colo::node {
namespace {

// This process's cgroup v2 path relative to the hierarchy's root ("0::/a/b" in /proc/self/cgroup).
std::string ownCgroup() {
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return "/";
}

bool moveTo(const std::string& cgroupDir) {
  std::ofstream f(cgroupDir + "/cgroup.procs");
  f << ::getpid() << "\n";
  f.flush();
  return static_cast<bool>(f);
}

}  // namespace

static int checkKernelHeld(std::FILE* out);

std::string selfTestReport(const SelfTestResult& r, const std::string& guard) {
  std::string out;
  for (const auto& [name, result] : r.checks) {
    char line[96];
    std::snprintf(line, sizeof(line), "  %-26s ", name.c_str());
    out += line;
    if (result == "ok") {
      out += "ok\n";
      continue;
    }
    out += "FAIL: " + result;
    if (coveredByDeclaration(name)) out += " [covered by colo.dev/splice]";
    out += "\n";
  }
  for (const auto& [what, why] : r.skipped) out += "  skipped " + what + ": " + why + "\n";
  out += "guard: " + guard + "\n";
  switch (r.verdict()) {
    case SelfTestResult::Verdict::Full:
      out += "verdict: every splice check passed: datapath: auto splices every opted-in pod\n";
      break;
    case SelfTestResult::Verdict::PerPod:
      out += std::string("verdict: only checks that colo.dev/splice covers failed: datapath: auto splices pods that declare colo.dev/splice: \"true\"") +
             (r.guardPassed() ? "" : ", but the guard failed, so it splices none") + "\n";
      break;
    case SelfTestResult::Verdict::None:
      out += "verdict: a check that no declaration covers failed: datapath: auto splices nothing on this kernel\n";
      break;
  }
  return out;
}

// SIGTERM, SIGINT and SIGHUP are held back while the check runs (its threads inherit the mask),
// so that an interrupted run still removes its cgroup and pin dir; the signal then ends it.
class HeldSignals {
 public:
  HeldSignals() {
    sigemptyset(&set_);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set_, s);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~HeldSignals() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  // The first held signal that arrived, 0 if none.
  int pending() {
    const timespec zero{};
    const int s = ::sigtimedwait(&set_, nullptr, &zero);
    return s > 0 ? s : 0;
  }

 private:
  sigset_t set_{}, old_{};
};

int checkKernel(std::FILE* out) {
  HeldSignals held;
  const int rc = checkKernelHeld(out);
  if (int sig = held.pending()) {
    std::fprintf(out, "interrupted by %s: cleaned up\n", ::strsignal(sig));
    return 128 + sig;
  }
  return rc;
}

static int checkKernelHeld(std::FILE* out) {
  utsname u{};
  ::uname(&u);
  std::fprintf(out, "colo-node check-kernel: %s %s %s\n", u.sysname, u.release, u.machine);
  auto root = Datapath::detectCgroupRoot();
  if (!root) {
    std::fprintf(out, "cannot run: %s\n", root.error().message.c_str());
    return 2;
  }
  const std::string tag = std::to_string(::getpid());
  const std::string cg = *root + "/colo-check-kernel-" + tag;
  const std::string back = *root + ownCgroup();
  if (::mkdir(cg.c_str(), 0755) != 0 || !moveTo(cg)) {
    std::fprintf(out, "cannot run: cannot make and enter cgroup %s: %s\n", cg.c_str(), std::strerror(errno));
    ::rmdir(cg.c_str());
    return 2;
  }
  DatapathConfig dc;
  dc.mode = "auto";
  dc.cgroupPath = cg;
  dc.pinDir = "/sys/fs/bpf/colo-check-kernel-" + tag;
  Metrics metrics;
  SelfTestResult r;
  std::string guard;
  {
    Datapath dp(dc, metrics);
    r = dp.checkKernel();
    guard = dp.status().value("guard", std::string("not loaded"));
  }
  if (auto s = Datapath::uninstall(dc.pinDir); !s) std::fprintf(out, "warning: %s\n", s.error().message.c_str());
  if (!moveTo(back)) (void)moveTo(*root);
  ::rmdir(cg.c_str());
  if (r.checks.count("load")) {
    std::fprintf(out, "cannot run: the datapath does not load: %s\n", r.checks["load"].c_str());
    return 2;
  }
  std::fputs(selfTestReport(r, guard).c_str(), out);
  return r.passed() ? 0 : 1;
}

}  // namespace colo::node
