// colo-cni-installer: runs on every node (init container or sidecar of the DaemonSet).
//   install   --bin-source F --bin-dir D --conf-dir D [--plugin-config JSON] [--watch [--decision-file F]]
//   uninstall --bin-dir D --conf-dir D
// install copies colo-cni into the host's CNI bin dir atomically and chains it into the active
// network configuration; with --watch it keeps it chained when the primary CNI rewrites its file,
// and stops editing, saying why, when the primary CNI keeps undoing the edit.
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>

#include "cni_conf.h"
#include "colo/common/unique_fd.h"

namespace {

using namespace colo::installer;
volatile sig_atomic_t g_stop = 0;

void log(const char* level, const std::string& msg) { std::fprintf(stderr, "colo-cni-installer %s: %s\n", level, msg.c_str()); }

int watch(const std::string& confDir, const ojson& extra) {
  colo::UniqueFd in(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!in || ::inotify_add_watch(in.get(), confDir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE) < 0) {
    log("error", "cannot watch " + confDir);
    return 1;
  }
  FightDetector fight(3, std::chrono::seconds(60));
  bool fighting = false;
  std::string lastError;
  while (!g_stop) {
    pollfd p{in.get(), POLLIN, 0};
    if (::poll(&p, 1, 1000) > 0) {
      char buf[4096];
      while (::read(in.get(), buf, sizeof(buf)) > 0) {
      }
    }
    if (fighting) continue;
    auto r = chain(confDir, extra);
    if (!r) {
      if (r.error().message != lastError) log("warn", r.error().message);
      lastError = r.error().message;
      continue;
    }
    lastError.clear();
    if (r->action == "present") continue;
    log("info", "colo-cni chained again into " + r->file + " (" + r->action + ")");
    if (fight.reAdded(std::chrono::steady_clock::now())) {
      fighting = true;
      log("error", "the primary CNI removed colo-cni from " + r->file +
                       " 3 times within 60 s; no longer editing it. colo-cni is probably not in the chain now. The primary "
                       "CNI must allow chaining: for Cilium set cni.exclusive=false (and do not let it own the whole conf dir). "
                       "See docs/install.md.");
    }
  }
  return fighting ? 3 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: colo-cni-installer install|uninstall --bin-dir D --conf-dir D [--bin-source F] [--plugin-config JSON] [--watch]\n");
    return 2;
  }
  const std::string cmd = argv[1];
  std::map<std::string, std::string> o;
  bool watchMode = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--watch") watchMode = true;
    else if (i + 1 < argc) o[a] = argv[++i];
  }
  ::signal(SIGTERM, [](int) { g_stop = 1; });
  ::signal(SIGINT, [](int) { g_stop = 1; });
  const std::string binDir = o["--bin-dir"], confDir = o["--conf-dir"];
  if (binDir.empty() || confDir.empty()) {
    log("error", "--bin-dir and --conf-dir are required");
    return 2;
  }
  auto uninstall = [&] {
    auto s = unchain(confDir);
    if (!s) log("error", s.error().message);
    auto b = removeBinary(binDir);
    if (!b) log("error", b.error().message);
    if (s && b) log("info", "colo-cni removed from " + confDir + " and " + binDir);
    return s && b ? 0 : 1;
  };
  if (cmd == "uninstall") return uninstall();
  if (cmd != "install") return 2;
  const ojson extra = o.count("--plugin-config") ? ojson::parse(o["--plugin-config"], nullptr, false) : ojson::object();
  if (extra.is_discarded() || !extra.is_object()) {
    log("error", "--plugin-config is not a JSON object");
    return 2;
  }
  if (!o["--bin-source"].empty()) {
    if (auto s = installBinary(o["--bin-source"], binDir); !s) {
      log("error", "installing colo-cni into " + binDir + ": " + s.error().message);
      return 1;
    }
    log("info", "colo-cni installed in " + binDir);
  }
  auto r = chain(confDir, extra);
  if (r) log("info", "colo-cni is in " + r->file + " (" + r->action + ")");
  else log(watchMode ? "warn" : "error", r.error().message);
  if (!watchMode) return r ? 0 : 1;
  const int rc = watch(confDir, extra);
  // Stopped. Whether colo leaves the node is colo-node's call (it asks the API whether its
  // DaemonSet is gone, or only being updated) and arrives in the decision file; without one in
  // 10 s, colo stays chained: a rolling update must not take colo out of the chain.
  if (const std::string decision = o["--decision-file"]; !decision.empty()) {
    for (int i = 0; i < 100; ++i) {
      char buf[32] = {};
      if (FILE* f = std::fopen(decision.c_str(), "r")) {
        const std::size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
        std::fclose(f);
        const std::string what(buf, n);
        if (what.rfind("uninstall", 0) == 0) {
          log("info", "colo-node says colo is being uninstalled from this node; removing colo-cni");
          ::unlink(decision.c_str());
          return uninstall();
        }
        if (what.rfind("keep", 0) == 0) break;
      }
      ::usleep(100000);
    }
    log("info", "stopping; colo-cni stays chained");
  }
  return rc;
}
