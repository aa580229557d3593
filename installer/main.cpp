// colo-cni-installer: runs on every node (init container and sidecar of the DaemonSet).
// install copies colo-cni into the host's CNI bin dir atomically and chains it into the network
// configuration runtimes load; with --watch it keeps it there when the primary CNI rewrites its
// file (backing off when the primary keeps undoing it). uninstall takes colo-cni out of every
// file it was ever put in, and removes the binary once no configuration names it.
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <map>
#include <set>
#include <string>

#include "binary.h"
#include "chainer.h"
#include "colo/common/files.h"
#include "colo/common/unique_fd.h"
#include "fight.h"

namespace {

using namespace colo::installer;
using clock_type = std::chrono::steady_clock;
volatile sig_atomic_t g_stop = 0;

constexpr const char* kUsage =
    "usage: colo-cni-installer install --bin-dir D --conf-dir D [--bin-source F] [--conf-file NAME]\n"
    "                                 [--plugin-config JSON] [--status-file F] [--wait SECONDS]\n"
    "                                 [--watch [--decision-file F]]\n"
    "       colo-cni-installer uninstall --bin-dir D --conf-dir D [--status-file F]\n"
    "  --bin-source F     copy this colo-cni binary into --bin-dir (atomically)\n"
    "  --conf-file NAME   chain into this file of --conf-dir instead of the one runtimes load\n"
    "  --plugin-config J  colo-cni's settings as a JSON object (failurePolicy, timeoutMs, ...)\n"
    "  --status-file F    write whether colo-cni is chained, as JSON, to F (colo-node reports it)\n"
    "  --wait SECONDS     wait this long for the primary CNI's configuration (default 0: do not wait)\n"
    "  --watch            keep colo-cni chained until SIGTERM\n"
    "  --decision-file F  at SIGTERM, wait up to 10 s for colo-node's decision in F: \"uninstall\"\n"
    "                     takes colo-cni off the node, \"keep\" (or nothing) leaves it chained\n";

void log(const char* level, const std::string& msg) { std::fprintf(stderr, "colo-cni-installer %s: %s\n", level, msg.c_str()); }

int usageError(const std::string& why) {
  std::fprintf(stderr, "colo-cni-installer: %s\n%s", why.c_str(), kUsage);
  return 2;
}

// One verb table: the flags each verb takes, and whether they take a value.
struct Verb {
  std::set<std::string> valued;
  std::set<std::string> switches;
};
const std::map<std::string, Verb>& verbs() {
  static const std::map<std::string, Verb> v = {
      {"install", {{"bin-dir", "conf-dir", "bin-source", "conf-file", "plugin-config", "status-file", "wait", "decision-file"}, {"watch"}}},
      {"uninstall", {{"bin-dir", "conf-dir", "status-file"}, {}}},
  };
  return v;
}

struct Args {
  std::string verb;
  std::map<std::string, std::string> values;
  std::set<std::string> switches;
  std::string get(const std::string& k) const { return values.count(k) ? values.at(k) : ""; }
};

// Parses argv against the verb table; an error message, or empty with `out` filled.
std::string parse(int argc, char** argv, Args& out) {
  if (argc < 2) return "a command is required";
  out.verb = argv[1];
  auto v = verbs().find(out.verb);
  if (v == verbs().end()) return "unknown command '" + out.verb + "'";
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) return "unexpected argument '" + a + "'";
    std::string name = a.substr(2), value;
    const auto eq = name.find('=');
    const bool inlineValue = eq != std::string::npos;
    if (inlineValue) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (v->second.switches.count(name)) {
      if (inlineValue) return "--" + name + " takes no value";
      out.switches.insert(name);
    } else if (v->second.valued.count(name)) {
      if (!inlineValue) {
        if (i + 1 >= argc) return "--" + name + " needs a value";
        value = argv[++i];
      }
      out.values[name] = value;
    } else {
      return "unknown flag --" + name + " for " + out.verb;
    }
  }
  if (out.get("bin-dir").empty() || out.get("conf-dir").empty()) return "--bin-dir and --conf-dir are required";
  if (out.get("conf-file").find('/') != std::string::npos) return "--conf-file is a file name in --conf-dir, not a path";
  if (!out.get("decision-file").empty() && !out.switches.count("watch")) return "--decision-file needs --watch";
  return "";
}

// The chain's state for colo-node (/readyz, a metric, an Event), written only when it changes.
class StatusFile {
 public:
  explicit StatusFile(std::string path) : path_(std::move(path)) {}
  void write(const ChainResult& r) {
    if (path_.empty()) return;
    // "loaded": the file is the one runtimes load (not only one named by --conf-file), so that
    // colo-node can tell when an earlier file appears while this installer is not running.
    const auto active = r.file.empty() ? std::nullopt : activeConfig(std::filesystem::path(r.file).parent_path().string());
    nlohmann::json j = {{"chained", r.chained}, {"file", r.file}, {"loaded", active && *active == r.file}, {"action", r.action}, {"message", r.message}};
    if (!r.chained && !r.advice.empty() && r.action == "backoff") j["advice"] = r.advice;
    if (j == last_) return;
    last_ = j;
    j["since"] = static_cast<long long>(std::time(nullptr));
    if (auto s = colo::files::writeAtomic(path_, j.dump() + "\n", 0644); !s) log("warn", "status file: " + s.error().message);
  }

 private:
  std::string path_;
  nlohmann::json last_;
};

int watch(const ChainOptions& opts, StatusFile& status) {
  colo::UniqueFd in(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!in || ::inotify_add_watch(in.get(), opts.confDir.c_str(),
                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB) < 0) {
    log("error", "cannot watch " + opts.confDir + ": " + colo::Error::fromErrno("inotify_add_watch").message);
    return 1;
  }
  FightDetector fight(3, std::chrono::seconds(60), std::chrono::seconds(2), std::chrono::minutes(5));
  clock_type::time_point pausedUntil{};
  std::string lastNote;
  auto note = [&](const char* level, const std::string& msg) {
    if (msg != lastNote) log(level, msg);
    lastNote = msg;
  };
  bool first = true;
  while (!g_stop) {
    // Every change in the directory, and once a second anyway (a link's target may change elsewhere).
    // colo's own files (its state, its temporary files) are not changes: writing them must not
    // wake the loop that wrote them.
    pollfd p{in.get(), POLLIN, 0};
    if (::poll(&p, 1, 1000) > 0) {
      alignas(inotify_event) char buf[8192];
      bool others = false;
      ssize_t n;
      while ((n = ::read(in.get(), buf, sizeof(buf))) > 0) {
        for (ssize_t off = 0; off < n;) {
          const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
          const std::string name = ev->len ? std::string(ev->name) : std::string();
          if (name.rfind(".colo-cni", 0) != 0) others = true;
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
      }
      if (!others) continue;
    }
    const auto now = clock_type::now();
    if (now < pausedUntil) {
      ChainResult r = inspect(opts);
      if (!r.chained) {
        r.action = "backoff";
        r.message = "the primary CNI keeps removing colo-cni from " + r.file + "; next try in " +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(pausedUntil - now).count() + 1) + " s";
      }
      status.write(r);
      continue;
    }
    auto r = chain(opts);
    if (!r) {
      note("warn", r.error().message);
      ChainResult failed;
      failed.message = r.error().message;
      status.write(failed);
      continue;
    }
    if (r->action == "appended" || r->action == "generated" || r->action == "updated") {
      log("info", "colo-cni chained into " + r->file + " (" + r->action + ")");
      lastNote.clear();
    } else if (!r->message.empty()) {
      note(r->chained ? "info" : "warn", r->message);
    }
    // colo's settings do not change during a watcher's life: an update after its first pass means
    // another writer (a second release's installer) put other settings there. Back off from it too.
    if (r->rechained || (r->action == "updated" && !first)) {
      const auto pause = fight.reAdded(now);
      if (pause.count() > 0) {
        pausedUntil = now + pause;
        log("error", std::string(r->rechained ? "the primary CNI (" + r->primary + ") removed colo-cni from "
                                              : "another installer keeps changing colo-cni's settings in ") +
                         r->file + " 3 times within 60 s; backing off: the next re-add waits " + std::to_string(pause.count() / 1000) +
                         " s (doubling up to 5 min), and colo keeps trying. " + r->advice);
      }
    }
    first = false;
    status.write(*r);
  }
  return 0;
}

// The init container: wait (bounded) for the primary's configuration, logging every few seconds.
int installOnce(const ChainOptions& opts, int waitSeconds, StatusFile& status) {
  const auto deadline = clock_type::now() + std::chrono::seconds(waitSeconds);
  auto nextLog = clock_type::now();
  for (;;) {
    auto r = chain(opts);
    if (!r) {
      log("error", r.error().message);
      return 1;
    }
    status.write(*r);
    // A file that is not valid JSON may be one the primary is still writing: retried within the
    // bound like a missing one, then reported (only the operator can fix a broken file).
    const bool retry = r->waiting || (r->unreadable && clock_type::now() < deadline && !g_stop);
    if (!retry) {
      if (r->chained) log("info", "colo-cni is in " + r->file + " (" + r->action + ")" + (r->message.empty() ? "" : ": " + r->message));
      // Not chained for a reason only the operator can fix: say it, and let the sidecar and
      // colo-node's readiness carry it (a crash loop would not fix a file).
      else log("error", r->message);
      return 0;
    }
    if (g_stop || clock_type::now() >= deadline) {
      log("error", r->message + (waitSeconds > 0 ? " (gave up after " + std::to_string(waitSeconds) + " s)" : ""));
      return 1;
    }
    if (clock_type::now() >= nextLog) {
      log("info", r->message + " (" +
                      std::to_string(std::chrono::duration_cast<std::chrono::seconds>(deadline - clock_type::now()).count()) +
                      " s left)");
      nextLog = clock_type::now() + std::chrono::seconds(5);
    }
    ::usleep(200000);
  }
}

int uninstall(const std::string& confDir, const std::string& binDir, StatusFile& status) {
  int rc = 0;
  if (auto s = unchain(confDir); !s) {
    log("error", s.error().message);
    rc = 1;
  }
  ChainResult gone;
  gone.message = "colo-cni uninstalled";
  status.write(gone);
  // libcni fails every ADD of a network whose chain names a missing binary: it stays while any
  // configuration on the node (colo's or anyone's) names it.
  if (auto naming = filesNamingColo(confDir); !naming.empty()) {
    std::string list;
    for (const auto& f : naming) list += (list.empty() ? "" : ", ") + f;
    log("warn", "colo-cni binary kept in " + binDir + ": still named by " + list + " (colo did not put it there)");
    return rc;
  }
  if (auto b = removeBinary(binDir); !b) {
    log("error", b.error().message);
    return 1;
  }
  if (rc == 0) log("info", "colo-cni removed from " + confDir + " and " + binDir);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" || std::string(argv[1]) == "help")) {
    std::printf("%s", kUsage);
    return 0;
  }
  Args a;
  if (auto err = parse(argc, argv, a); !err.empty()) return usageError(err);
  ::signal(SIGTERM, [](int) { g_stop = 1; });
  ::signal(SIGINT, [](int) { g_stop = 1; });
  const std::string binDir = a.get("bin-dir"), confDir = a.get("conf-dir");
  StatusFile status(a.get("status-file"));
  if (a.verb == "uninstall") return uninstall(confDir, binDir, status);

  ChainOptions opts{confDir, a.get("conf-file"), ojson::object()};
  if (!a.get("plugin-config").empty()) {
    opts.extra = ojson::parse(a.get("plugin-config"), nullptr, false);
    if (opts.extra.is_discarded() || !opts.extra.is_object()) return usageError("--plugin-config is not a JSON object");
  }
  int waitSeconds = 0;
  if (!a.get("wait").empty()) {
    char* end = nullptr;
    const long w = std::strtol(a.get("wait").c_str(), &end, 10);
    if (*end != '\0' || w < 0 || w > 86400) return usageError("--wait must be a number of seconds from 0 to 86400");
    waitSeconds = static_cast<int>(w);
  }
  if (!a.get("bin-source").empty()) {
    if (auto s = installBinary(a.get("bin-source"), binDir); !s) {
      log("error", "installing colo-cni into " + binDir + ": " + s.error().message);
      return 1;
    }
    log("info", "colo-cni installed in " + binDir);
  }
  if (!a.switches.count("watch")) return installOnce(opts, waitSeconds, status);

  const int rc = watch(opts, status);
  // Stopped. Whether colo leaves the node is colo-node's call, and arrives in the decision file;
  // without one in 10 s colo stays chained: a rolling update must not take colo out of the chain.
  if (const std::string decision = a.get("decision-file"); !decision.empty()) {
    for (int i = 0; i < 100; ++i) {
      auto what = colo::files::read(decision, 64);
      if (what && what->rfind("uninstall", 0) == 0) {
        log("info", "colo-node says colo is being uninstalled from this node; removing colo-cni");
        ::unlink(decision.c_str());
        return uninstall(confDir, binDir, status);
      }
      if (what && what->rfind("keep", 0) == 0) break;
      ::usleep(100000);
    }
    log("info", "stopping; colo-cni stays chained");
  }
  return rc;
}
