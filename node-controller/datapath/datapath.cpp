#include "datapath/datapath.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "colo/common/files.h"
#include "colo/common/opt_in.h"
#include "colo/common/unique_fd.h"

namespace colo::node {
namespace {

bool isFs(const std::string& path, unsigned long magic) {
  struct statfs fs{};
  return ::statfs(path.c_str(), &fs) == 0 && static_cast<unsigned long>(fs.f_type) == magic;
}

Expected<colo_addr> parseAddress(const std::string& cidr) {
  const std::string ip = cidr.substr(0, cidr.find('/'));
  colo_addr a{};
  if (::inet_pton(AF_INET, ip.c_str(), &a.addr[0]) == 1) {
    a.family = AF_INET;
    return a;
  }
  if (::inet_pton(AF_INET6, ip.c_str(), a.addr) == 1) {
    a.family = AF_INET6;
    return a;
  }
  return Error::make("invalid_argument", "'" + cidr + "' is not an IP address");
}

const char* kLinkPin = "/sockops_link";
// What the guard records in a pod's flags, kept when colo-node rewrites them: it lasts as long as the pod.
constexpr std::uint32_t kGuardBits = COLO_POD_UNSAFE | COLO_POD_SEEN_BLOCKING | COLO_POD_SEEN_EAGAIN | COLO_POD_SEEN_SPLICE;
// Guard events that arrive before the pods are known (colo-node starting), held until sync().
constexpr std::size_t kMaxEarlyGuardEvents = 4096;

std::string addressText(const colo_addr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(static_cast<int>(a.family), a.addr, buf, sizeof(buf));
  return buf;
}

bool sameAddress(const colo_addr& a, const colo_addr& b) { return a.family == b.family && std::memcmp(a.addr, b.addr, sizeof(a.addr)) == 0; }

const char* const kPodStates[] = {"spliced", "not_declared", "unsafe", "off"};

// libbpf prints to stderr by default; its messages belong in our log, at debug (our own errors
// carry what matters).
int libbpfPrint(enum libbpf_print_level, const char* fmt, va_list args) {
  char buf[1024];
  const int n = std::vsnprintf(buf, sizeof(buf), fmt, args);
  if (n > 0) spdlog::debug("libbpf: {}", std::string(buf, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof(buf) - 1)));
  return 0;
}

}  // namespace

Datapath::Datapath(DatapathConfig config, Metrics& metrics) : config_(std::move(config)), metrics_(metrics) {
  metrics_.describe("colo_datapath_active", "gauge", "1 when the sockmap splice is on for this node.");
  metrics_.describe("colo_datapath_selftest", "gauge", "Datapath self-test result per check (1 pass, 0 fail).");
  metrics_.describe("colo_datapath_sockets_inserted_total", "counter", "Sockets placed in the sockhash (both ends opted-in pods).");
  metrics_.describe("colo_datapath_insert_failed_total", "counter", "Sockhash insertions that failed.");
  metrics_.describe("colo_datapath_skipped_total", "counter", "Established sockets left alone: an end is not an opted-in pod.");
  metrics_.describe("colo_datapath_messages_redirected_total", "counter", "Messages moved socket to socket.");
  metrics_.describe("colo_datapath_bytes_redirected_total", "counter", "Bytes moved socket to socket.");
  metrics_.describe("colo_datapath_fallbacks_total", "counter", "Messages that took the normal path (peer not in the sockhash).");
  metrics_.describe("colo_datapath_skipped_not_spliceable_total", "counter",
                    "Established sockets between two pods left alone: an end did not declare colo.dev/splice (per-pod mode) or is unsafe.");
  metrics_.describe("colo_datapath_pods", "gauge", "Pods colo is on for, by whether their connections are spliced (spliced, not_declared, unsafe, off).");
  metrics_.describe("colo_datapath_blocking_reads_total", "counter", "Blocking reads on spliced sockets of a pod, seen by the guard.");
  metrics_.describe("colo_datapath_spurious_eagain_total", "counter", "EAGAIN returned to a blocking reader of a spliced socket of a pod, seen by the guard.");
  metrics_.describe("colo_datapath_splice_reads_total", "counter",
                    "splice(2) calls reading from a spliced socket of a pod, seen by the guard (that reader cannot get the spliced data).");
  metrics_.describe("colo_datapath_guard", "gauge", "1 when the guard (on the sockmap receive path and splice(2)) is loaded.");
  metrics_.describe("colo_splice_annotation_not_understood_total", "counter", "colo.dev/splice values that are not a boolean (the pod is not declared).");
  metrics_.set("colo_datapath_active", {}, 0);
  metrics_.set("colo_datapath_guard", {}, 0);
  for (const char* st : kPodStates) metrics_.set("colo_datapath_pods", {{"state", st}}, 0);
}

Datapath::~Datapath() = default;

Expected<std::string> Datapath::detectCgroupRoot() {
  for (const char* p : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    if (isFs(p, CGROUP2_SUPER_MAGIC)) return std::string(p);
  }
  return Error::make("unavailable", "no cgroup v2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup");
}

// What the kernel must offer, asked before loading so that the reason for "off" is plain.
Status probeKernel() {
  struct Need {
    const char* what;
    int ok;
  };
  const Need needs[] = {
      {"BPF_PROG_TYPE_SOCK_OPS", libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, nullptr)},
      {"BPF_PROG_TYPE_SK_MSG", libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_MSG, nullptr)},
      {"BPF_MAP_TYPE_SOCKHASH", libbpf_probe_bpf_map_type(BPF_MAP_TYPE_SOCKHASH, nullptr)},
      {"BPF_MAP_TYPE_PERCPU_ARRAY", libbpf_probe_bpf_map_type(BPF_MAP_TYPE_PERCPU_ARRAY, nullptr)},
  };
  for (const auto& n : needs) {
    if (n.ok != 1) return Error::make("unavailable", std::string("the kernel does not offer ") + n.what);
  }
  return {};
}

Status Datapath::load() {
  libbpf_set_print(libbpfPrint);
  if (auto s = probeKernel(); !s) return s;
  cgroup_ = config_.cgroupPath;
  if (cgroup_.empty()) {
    auto root = detectCgroupRoot();
    if (!root) return root.error();
    cgroup_ = *root;
  } else if (!isFs(cgroup_, CGROUP2_SUPER_MAGIC)) {
    return Error::make("invalid_argument", "cgroupPath " + cgroup_ + " is not in a cgroup v2 hierarchy");
  }
  const std::string bpffs = std::filesystem::path(config_.pinDir).parent_path().string();
  if (!isFs(bpffs, BPF_FS_MAGIC)) {
    if (::mount("bpf", bpffs.c_str(), "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") != 0) {
      return Error::fromErrno("mount(bpf, " + bpffs + ")");
    }
    spdlog::info("datapath: mounted bpffs at {}", bpffs);
  }
  adoptLegacyPins();
  if (auto s = files::makeDirs(config_.pinDir, 0700); !s) return s;
  if (!config_.node.empty() && !pinOwner_) {
    auto owner = PinOwner::claim(config_.pinDir, config_.node);
    if (!owner) return owner.error();
    pinOwner_.emplace(std::move(*owner));
  }

  bpf_ = std::make_unique<ColoBpf>();
  if (auto s = bpf_->openAndLoad(config_.pinDir, true); !s) return s;
  if (pinOwner_) {
    if (auto s = pinOwner_->mark(bpf_map__fd((*bpf_)->maps.colo_socks)); !s) return s;
  }

  // sk_msg on the sockhash: re-attaching replaces the previous program, sockets stay in the map.
  const int sockhash = bpf_map__fd((*bpf_)->maps.colo_socks);
  if (::bpf_prog_attach(bpf_program__fd((*bpf_)->progs.colo_sk_msg), sockhash, BPF_SK_MSG_VERDICT, 0) != 0) {
    return Error::fromErrno("bpf_prog_attach(sk_msg, colo_socks)");
  }
  // sock_ops at the cgroup: a pinned link from an earlier run is updated in place (atomic
  // program replace); otherwise a new link is made and pinned.
  const std::string linkPath = config_.pinDir + kLinkPin;
  if (bpf_link* old = bpf_link__open(linkPath.c_str())) {
    const int err = bpf_link__update_program(old, (*bpf_)->progs.colo_sockops);
    bpf_link__destroy(old);  // closes our fd only: the pin keeps the link attached
    if (err != 0) return Error::fromErrno("bpf_link__update_program(" + linkPath + ")", -err);
    spdlog::info("datapath: reused pinned maps and link in {}", config_.pinDir);
  } else {
    UniqueFd cg(::open(cgroup_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg) return Error::fromErrno("open(" + cgroup_ + ")");
    bpf_link* link = bpf_program__attach_cgroup((*bpf_)->progs.colo_sockops, cg.get());
    if (!link) return Error::fromErrno("attach sock_ops to " + cgroup_);
    const int err = bpf_link__pin(link, linkPath.c_str());
    bpf_link__destroy(link);  // closes our fd only: the pin keeps the link attached
    if (err != 0) return Error::fromErrno("bpf_link__pin(" + linkPath + ")", -err);
    spdlog::info("datapath: sock_ops attached at {}, pinned in {}", cgroup_, config_.pinDir);
  }
  return {};
}

// colo 0.1.0 pinned every node's datapath in one directory. Upgrading to a pin dir per node would
// leave that link attached beside the new one; renaming the directory instead keeps its maps, its
// link and every spliced connection, and hands them to this node (bpffs renames atomically, so of
// two nodes sharing a bpffs one takes it and the other starts fresh). A directory that carries an
// owner marker belongs to a current colo-node and is never taken.
void Datapath::adoptLegacyPins() {
  const std::string& legacy = config_.legacyPinDir;
  std::error_code ec;
  if (legacy.empty() || legacy == config_.pinDir || std::filesystem::exists(config_.pinDir, ec) || !std::filesystem::exists(legacy, ec)) return;
  for (const auto& e : std::filesystem::directory_iterator(legacy, ec)) {
    if (e.path().filename().string().rfind("owner_", 0) == 0) return;
  }
  if (::rename(legacy.c_str(), config_.pinDir.c_str()) == 0) {
    spdlog::info("datapath: took over {} (colo 0.1.0's shared pin dir) as {}: maps, link and spliced connections kept", legacy, config_.pinDir);
  } else if (errno != ENOENT) {
    spdlog::warn("datapath: cannot take over {} as {}: {}; remove it with `colo-node uninstall --bpf-pin-dir {}`", legacy, config_.pinDir,
                 std::strerror(errno), legacy);
  }
}

SelfTestResult Datapath::selfTest() {
  return runSelfTest(SelfTestHooks{
      [this](const std::string& ip) { return setAddress(ip, true); },
      [this](const std::string& ip) { (void)setAddress(ip, false); },
      [this] { return stats().msgsRedirected; },
      [this](int fd) -> Status {
        // The socket's own 4-tuple, as sock_ops keys it (ports in host order).
        sockaddr_storage local{}, peer{};
        socklen_t ll = sizeof(local), pl = sizeof(peer);
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) {
          return Error::fromErrno("getsockname/getpeername");
        }
        colo_sock_key key{};
        key.family = local.ss_family;
        if (local.ss_family == AF_INET) {
          const auto* l = reinterpret_cast<sockaddr_in*>(&local);
          const auto* r = reinterpret_cast<sockaddr_in*>(&peer);
          key.local_ip[0] = l->sin_addr.s_addr;
          key.remote_ip[0] = r->sin_addr.s_addr;
          key.local_port = ntohs(l->sin_port);
          key.remote_port = ntohs(r->sin_port);
        } else {
          const auto* l = reinterpret_cast<sockaddr_in6*>(&local);
          const auto* r = reinterpret_cast<sockaddr_in6*>(&peer);
          std::memcpy(key.local_ip, &l->sin6_addr, 16);
          std::memcpy(key.remote_ip, &r->sin6_addr, 16);
          key.local_port = ntohs(l->sin6_port);
          key.remote_port = ntohs(r->sin6_port);
        }
        const std::uint64_t value = static_cast<std::uint64_t>(fd);
        if (::bpf_map_update_elem(bpf_map__fd((*bpf_)->maps.colo_socks), &key, &value, BPF_ANY) != 0) {
          return Error::fromErrno("bpf_map_update_elem(colo_socks, fd)");
        }
        return {};
      },
      [this](const std::string& ip) -> std::optional<std::uint64_t> {
        auto a = parseAddress(ip);
        if (!guard_ || !a) return std::nullopt;
        auto c = guard_->count(*a);
        return c ? std::optional<std::uint64_t>(c->blocking_reads) : std::nullopt;
      },
  });
}

void Datapath::loadGuard() {
  auto g = Guard::load(config_.pinDir, [this](const GuardEvent& e) { onGuardEvent(e); });
  if (!g) {
    guardStatus_ = "cannot load: " + g.error().message;
    spdlog::warn("datapath: guard: {}", guardStatus_);
    return;
  }
  guard_ = std::move(*g);
  guardStatus_ = "loaded: " + guard_->how();
  spdlog::info("datapath: guard {}", guardStatus_);
}

SelfTestResult Datapath::checkKernel() {
  if (auto s = load(); !s) {
    SelfTestResult r;
    r.checks["load"] = s.error().message;
    return r;
  }
  loadGuard();
  active_ = true;
  auto result = selfTest();
  active_ = false;
  guard_.reset();
  // Nothing new is spliced by this run: the link it made (or updated) goes, as start() does when
  // the splice stays off. A colo-node running on this pin dir refuses to share it (pin owner).
  detachPinned(config_.pinDir);
  bpf_.reset();
  return result;
}

void Datapath::start() {
  if (config_.mode == "off") {
    state_ = "off";
    reason_ = "disabled by configuration (datapath: off)";
    spdlog::info("datapath: {}", reason_);
    detachEarlierRun();
    publish();
    return;
  }
  if (auto s = load(); !s) {
    state_ = "off";
    reason_ = "cannot load: " + s.error().message;
    spdlog::warn("datapath: off: {}; endpoints and everything else keep working", reason_);
    publish();
    return;
  }
  loadGuard();
  active_ = true;  // the self-test needs the maps live
  selftest_ = selfTest();
  for (const auto& [name, result] : selftest_.checks) {
    metrics_.set("colo_datapath_selftest", {{"check", name}}, result == "ok" ? 1 : 0);
  }
  for (const auto& [what, why] : selftest_.skipped) spdlog::warn("datapath: self-test skipped {}: {}", what, why);
  if (guard_ && !selftest_.guardPassed()) {
    guardStatus_ = "loaded (" + guard_->how() + ") but failed its check: " + selftest_.guardFailures();
    guard_.reset();
  }
  const auto verdict = selftest_.verdict();
  const std::string failures = selftest_.spliceFailures();
  if (config_.mode == "on") {
    splice_ = Splice::Full;
    state_ = "on";
    reason_ = failures.empty() ? "self-test passed" : "forced on despite the self-test: " + failures;
  } else if (verdict == SelfTestResult::Verdict::Full) {
    splice_ = Splice::Full;
    state_ = "on";
    reason_ = "self-test passed";
  } else if (verdict == SelfTestResult::Verdict::PerPod && guard_) {
    splice_ = Splice::PerPod;
    state_ = "per-pod";
    reason_ = "self-test failed only checks that " + std::string(kSpliceAnnotation) +
              " covers (" + selftest_.failedNames(false) + "; see selftest); connections between two pods that declared " + kSpliceAnnotation +
              ": \"true\" are spliced, and the guard withdraws a pod on its first blocking read or splice(2)";
  } else {
    splice_ = Splice::Off;
    reason_ = verdict == SelfTestResult::Verdict::PerPod
                  ? "self-test failed: " + failures + "; per-pod splice (" + kSpliceAnnotation + ") refused: the guard " + guardStatus_
                  : "self-test failed: " + failures;
  }
  if (splice_ == Splice::Off) {
    active_ = false;
    state_ = "off";
    spdlog::warn("datapath: off: {}. Set datapath: on to force it.", reason_);
    // Detach sock_ops so that nothing new is spliced. The maps stay pinned: connections spliced
    // by an earlier run keep their path until they close.
    detachPinned(config_.pinDir);
    guard_.reset();
    bpf_.reset();
  } else {
    spdlog::info("datapath: {} ({}); guard {}", state_, reason_, guardStatus_);
  }
  publish();
}

// datapath: off after a run with it on: that run's pinned sock_ops and guard links would keep
// splicing (and guarding) new connections with nobody keeping the pod map true. They go; the maps
// stay pinned, so connections spliced earlier keep their path until they close (as when the
// self-test turns the splice off). A pin dir another colo-node holds is left alone.
void Datapath::detachEarlierRun() {
  std::error_code ec;
  if (!std::filesystem::is_directory(config_.pinDir, ec)) return;
  if (!config_.node.empty() && !pinOwner_) {
    auto owner = PinOwner::claim(config_.pinDir, config_.node);
    if (!owner) {
      spdlog::warn("datapath: off, but {} is not this node's: its links are left alone ({})", config_.pinDir, owner.error().message);
      return;
    }
    pinOwner_.emplace(std::move(*owner));
  }
  if (const int n = detachPinned(config_.pinDir); n > 0) {
    spdlog::info("datapath: off: removed {} link(s) an earlier run pinned in {} (sock_ops, guard); nothing new is spliced, connections "
                 "spliced before keep their path until they close",
                 n, config_.pinDir);
  }
}

int Datapath::detachPinned(const std::string& pinDir) {
  int n = ::unlink((pinDir + kLinkPin).c_str()) == 0 ? 1 : 0;
  return n + ColoGuardBpf::unpinLinks(pinDir);
}

void Datapath::publish() {
  metrics_.set("colo_datapath_active", {}, active_ ? 1 : 0);
  metrics_.set("colo_datapath_guard", {}, guard_ ? 1 : 0);
}

void Datapath::stopGuard() {
  std::unique_ptr<Guard> g;
  {
    std::lock_guard lock(mu_);
    g = std::move(guard_);
    events_ = nullptr;
  }
  g.reset();  // joins the guard's thread, which may be waiting for mu_: not held here
}

void Datapath::setEventSink(PodEventSink sink) {
  std::lock_guard lock(mu_);
  events_ = std::move(sink);
}

std::uint32_t Datapath::flagsFor(const PodRecord& r) const {
  switch (splice_) {
    case Splice::Full: return COLO_POD_SPLICE;
    // A pod the guard caught is withdrawn on every address it has (a dual-stack pod caught over
    // IPv4 must not go on splicing over IPv6).
    case Splice::PerPod: return COLO_POD_GUARDED | (r.declared ? COLO_POD_SPLICE : 0u) | (r.unsafe ? COLO_POD_UNSAFE : 0u);
    case Splice::Off: return 0;
  }
  return 0;
}

// Under `on` every opted-in pod is spliced, whatever the guard saw under `auto` before a restart:
// the withdrawal (UNSAFE) is dropped, what was seen is kept for /debug/pods.
std::uint32_t Datapath::keptGuardBits(std::uint32_t flags) const {
  return flags & (splice_ == Splice::PerPod ? kGuardBits : (kGuardBits & ~std::uint32_t{COLO_POD_UNSAFE}));
}

Datapath::PodRecord Datapath::recordFor(const Pod& pod) const {
  PodRecord r;
  r.key = pod.key;
  r.podNamespace = pod.podNamespace;
  r.name = pod.name;
  r.uid = pod.uid;
  r.ips = pod.ips;
  if (pod.annotations.is_object() && pod.annotations.contains(kSpliceAnnotation)) {
    const auto& v = pod.annotations.at(kSpliceAnnotation);
    const std::string raw = v.is_string() ? v.get<std::string>() : v.dump();
    auto b = v.is_string() ? optin::parseBool(raw) : std::nullopt;
    if (b) r.declared = *b;
    else r.badValue = raw.substr(0, 64);
  }
  return r;
}

PodSplice Datapath::spliceOf(const PodRecord* r) const {
  if (!active_) return {"off", "the datapath is off on this node: " + reason_};
  if (!r) return {"off", "colo is not on for this pod"};
  if (splice_ == Splice::Full) {
    if (r->unsafe) return {"spliced", reason_ + "; note: " + r->unsafeWhy + " (kept spliced: the splice is on for every pod)"};
    return {"spliced", reason_};
  }
  const std::string failed = selftest_.failedNames(true);
  if (!r->badValue.empty()) {
    return {"not_declared", std::string(kSpliceAnnotation) + " value '" + r->badValue + "' is not understood (use \"true\" or \"false\")"};
  }
  if (!r->declared) {
    return {"not_declared", std::string("this node's kernel breaks blocking reads on spliced sockets (self-test: ") + failed + "); annotate the pod " +
                                kSpliceAnnotation + ": \"true\" if its TCP readers are event-driven (non-blocking, poll/epoll) and it uses no TCP urgent data (MSG_OOB)"};
  }
  if (r->unsafe) return {"unsafe", r->unsafeWhy + "; its new connections are not spliced (those spliced before stay so until they close)"};
  return {"spliced", std::string("declared ") + kSpliceAnnotation + ": \"true\"; this node splices declared pods only (self-test: " + failed + ")"};
}

PodSplice Datapath::podSplice(const Pod& pod) const {
  std::lock_guard lock(mu_);
  auto it = pods_.find(pod.key);
  return spliceOf(it == pods_.end() ? nullptr : &it->second);
}

void Datapath::publishPods() const {
  std::map<std::string, int> n;
  for (const char* st : kPodStates) n[st] = 0;
  for (const auto& [k, r] : pods_) n[spliceOf(&r).state]++;
  for (const auto& [st, c] : n) metrics_.set("colo_datapath_pods", {{"state", st}}, c);
}

// Logs and tells (as an Event) what the splice is for a pod that was just attached or changed.
void Datapath::tellSplice(const PodRecord& r, bool changed) {
  PodSplice sp;
  PodEventSink sink;
  {
    std::lock_guard lock(mu_);
    sp = spliceOf(&r);
    sink = events_;
  }
  const std::string who = r.podNamespace + "/" + r.name + " (" + r.key + ")";
  if (!r.badValue.empty()) {
    spdlog::warn("pod {}: annotation {} value '{}' is not understood (true/false, 1/0, t/f); not declared", who, kSpliceAnnotation, r.badValue);
    metrics_.add("colo_splice_annotation_not_understood_total");
  }
  if (splice_ != Splice::PerPod) return;  // Full: every pod alike; Off: the lifecycle's DatapathOff says it
  if (!changed && sp.state == "not_declared" && r.badValue.empty()) {
    spdlog::info("pod {}: connections not spliced: {}", who, sp.reason);
  } else {
    spdlog::info("pod {}: splice {}: {}", who, sp.state, sp.reason);
  }
  if (!sink) return;
  Pod p;
  p.key = r.key;
  p.podNamespace = r.podNamespace;
  p.name = r.name;
  p.uid = r.uid;
  if (!r.badValue.empty()) sink(p, "Warning", "SpliceAnnotationNotUnderstood", sp.reason);
  else if (sp.state == "spliced") sink(p, "Normal", "Spliced", "TCP between this pod and other declared pods on node is spliced: " + sp.reason);
  else if (sp.state == "not_declared") sink(p, "Normal", "SpliceNotDeclared", "TCP of this pod is not spliced: " + sp.reason);
}

void Datapath::onGuardEvent(const GuardEvent& e) {
  {
    std::lock_guard lock(mu_);
    // The ring is pinned: what the guard saw while colo-node was down is read as soon as the guard
    // loads, before the restored pods are known. Held until sync(), then told like any other.
    if (!synced_) {
      if (earlyGuardEvents_.size() < kMaxEarlyGuardEvents) earlyGuardEvents_.push_back(e);
      return;
    }
  }
  tellGuardEvent(e, false);
}

void Datapath::tellGuardEvent(const GuardEvent& e, bool early) {
  const std::string ip = addressText(e.addr);
  const std::string proc = "process " + e.comm + " (pid " + std::to_string(e.pid) + ")";
  PodRecord r;
  PodEventSink sink;
  bool found = false;
  {
    std::lock_guard lock(mu_);
    for (auto& [k, rec] : pods_) {
      for (const auto& cidr : rec.ips) {
        auto a = parseAddress(cidr);
        if (a && sameAddress(*a, e.addr)) found = true;
      }
      if (!found) continue;
      if (e.kind == COLO_GUARD_BLOCKING_READ) {
        rec.unsafe = true;
        rec.unsafeWhy = proc + " did a blocking read on a spliced socket of " + ip;
      } else if (e.kind == COLO_GUARD_SPLICE_READ) {
        rec.unsafe = true;
        rec.unsafeWhy = proc + " read a spliced socket of " + ip + " with splice(2), which cannot get spliced data";
      }
      // The BPF side withdrew the address it saw; the pod's other addresses follow.
      if (active_ && (e.flags & COLO_POD_UNSAFE)) {
        for (const auto& addr : rec.ips) {
          if (auto s = setAddress(addr, true, flagsFor(rec)); !s) spdlog::warn("datapath: pod {}: {}", rec.key, s.error().message);
        }
      }
      r = rec;
      sink = events_;
      publishPods();
      break;
    }
  }
  if (!found) {
    spdlog::debug("datapath: guard: {} on {} by {} (pid {}), not a pod's address (the self-test's)", e.kind, ip, e.comm, e.pid);
    return;
  }
  const std::string who = r.podNamespace + "/" + r.name + " (" + r.key + ")";
  const bool withdrawn = (e.flags & COLO_POD_UNSAFE) != 0;
  const std::string outcome =
      withdrawn ? "New connections of this pod are no longer spliced; those spliced before stay so until they close (taking a socket out of "
                  "the splice would lose data queued on it)."
                : "The splice stays on for it (datapath: on, or a kernel that passed the self-test).";
  const std::string when = early ? " (seen by the pinned guard while colo-node was down or starting)" : "";
  std::string msg, reason = "SpliceUnsafe";
  if (e.kind == COLO_GUARD_BLOCKING_READ) {
    msg = proc + " of this pod did a blocking read on a spliced socket (" + ip + ")" + when + "; the kernel can answer it with EAGAIN. " + outcome;
  } else if (e.kind == COLO_GUARD_SPLICE_READ) {
    msg = proc + " of this pod read a spliced socket (" + ip + ") with splice(2)" + when +
          ": the kernel's tcp_splice_read does not read the splice's queue, so that reader gets none of the data sent to it over the "
          "splice (then EOF); Go's io.Copy between two TCP connections does this. " + outcome;
  } else {
    reason = "SpliceSpuriousEagain";
    msg = proc + " of this pod got EAGAIN from a blocking read on a spliced socket (" + ip + ")" + when +
          ": the kernel's sockmap receive path ended its wait with nothing queued";
  }
  spdlog::warn("pod {}: guard: {}", who, msg);
  if (!sink) return;
  Pod p;
  p.key = r.key;
  p.podNamespace = r.podNamespace;
  p.name = r.name;
  p.uid = r.uid;
  sink(p, "Warning", reason, msg);
}

nlohmann::json Datapath::status() const {
  nlohmann::json checks = nlohmann::json::object();
  for (const auto& [k, v] : selftest_.checks) checks[k] = v;
  nlohmann::json out = {{"state", state_}, {"reason", reason_}, {"mode", config_.mode}, {"cgroup", cgroup_},
                        {"pinDir", config_.pinDir}, {"selftest", checks}};
  if (!selftest_.skipped.empty()) out["selftestSkipped"] = selftest_.skipped;
  out["guard"] = guardStatus_;
  if (splice_ == Splice::PerPod) out["perPod"] = std::string("only pods annotated ") + kSpliceAnnotation + ": \"true\" are spliced";
  return out;
}

DatapathStats Datapath::stats() const {
  DatapathStats out;
  if (!bpf_) return out;
  const int fd = bpf_map__fd((*bpf_)->maps.colo_stats);
  const int cpus = libbpf_num_possible_cpus();
  std::vector<std::uint64_t> values(static_cast<std::size_t>(cpus > 0 ? cpus : 1));
  std::uint64_t* fields[] = {&out.socketsInserted, &out.insertFailed,    &out.skippedNotPod,   &out.msgsRedirected,
                             &out.bytesRedirected, &out.fallbacks,       &out.skippedNotSplice};
  static_assert(sizeof(fields) / sizeof(fields[0]) == COLO_STAT_MAX);
  for (std::uint32_t k = 0; k < COLO_STAT_MAX; ++k) {
    if (::bpf_map_lookup_elem(fd, &k, values.data()) != 0) continue;
    for (auto v : values) *fields[k] += v;
  }
  metrics_.set("colo_datapath_sockets_inserted_total", {}, static_cast<double>(out.socketsInserted));
  metrics_.set("colo_datapath_insert_failed_total", {}, static_cast<double>(out.insertFailed));
  metrics_.set("colo_datapath_skipped_total", {}, static_cast<double>(out.skippedNotPod));
  metrics_.set("colo_datapath_messages_redirected_total", {}, static_cast<double>(out.msgsRedirected));
  metrics_.set("colo_datapath_bytes_redirected_total", {}, static_cast<double>(out.bytesRedirected));
  metrics_.set("colo_datapath_fallbacks_total", {}, static_cast<double>(out.fallbacks));
  metrics_.set("colo_datapath_skipped_not_spliceable_total", {}, static_cast<double>(out.skippedNotSplice));
  std::lock_guard lock(mu_);
  if (guard_) {
    for (const auto& [k, r] : pods_) {
      std::uint64_t reads = 0, eagain = 0, splices = 0;
      for (const auto& cidr : r.ips) {
        auto a = parseAddress(cidr);
        if (!a) continue;
        if (auto c = guard_->count(*a)) {
          reads += c->blocking_reads;
          eagain += c->spurious_eagain;
        }
        splices += guard_->spliceReads(*a);
      }
      const Labels l{{"namespace", r.podNamespace}, {"pod", r.name}};
      metrics_.set("colo_datapath_blocking_reads_total", l, static_cast<double>(reads));
      metrics_.set("colo_datapath_spurious_eagain_total", l, static_cast<double>(eagain));
      metrics_.set("colo_datapath_splice_reads_total", l, static_cast<double>(splices));
    }
  }
  publishPods();
  return out;
}

Status Datapath::setAddress(const std::string& cidr, bool present, std::uint32_t flags) {
  if (!bpf_) return Error::make("unavailable", "datapath not loaded");
  auto a = parseAddress(cidr);
  if (!a) return a.error();
  const int fd = bpf_map__fd((*bpf_)->maps.colo_pods);
  if (present) {
    // What the guard recorded on an address already here (UNSAFE, SEEN_*) lasts as long as the pod.
    colo_pod_info info{};
    const std::uint32_t kept = ::bpf_map_lookup_elem(fd, &a.value(), &info) == 0 ? keptGuardBits(info.flags) : 0;
    info = colo_pod_info{};
    info.flags = flags | kept;
    if (::bpf_map_update_elem(fd, &a.value(), &info, BPF_ANY) != 0) return Error::fromErrno("bpf_map_update_elem(colo_pods)");
  } else {
    ::bpf_map_delete_elem(fd, &a.value());
    if (guard_) guard_->forget(*a);
  }
  return {};
}

Status Datapath::attach(Pod& pod, int, bool, std::vector<std::string>&) {
  PodRecord r = recordFor(pod);
  {
    std::lock_guard lock(mu_);
    pods_[pod.key] = r;  // counted as "off" in colo_datapath_pods while the datapath is off
    publishPods();
    if (!active_) return {};
    for (const auto& ip : pod.ips) {
      if (auto s = setAddress(ip, true, flagsFor(r)); !s) spdlog::warn("datapath: pod {}: {}", pod.key, s.error().message);
    }
  }
  tellSplice(r, false);
  return {};
}

void Datapath::annotationsChanged(const Pod& pod) {
  PodRecord r = recordFor(pod);
  {
    std::lock_guard lock(mu_);
    auto it = pods_.find(pod.key);
    if (!active_ || it == pods_.end()) return;
    if (it->second.declared == r.declared && it->second.badValue == r.badValue) return;
    r.unsafe = it->second.unsafe;
    r.unsafeWhy = it->second.unsafeWhy;
    for (const auto& ip : pod.ips) {
      if (auto s = setAddress(ip, true, flagsFor(r)); !s) spdlog::warn("datapath: pod {}: {}", pod.key, s.error().message);
    }
    it->second = r;
    publishPods();
  }
  tellSplice(r, true);
}

Status Datapath::detach(const Pod& pod) {
  std::lock_guard lock(mu_);
  pods_.erase(pod.key);
  publishPods();
  if (!bpf_) return {};
  for (const auto& ip : pod.ips) (void)setAddress(ip, false);  // an address not in the map is already undone
  return {};
}

Status Datapath::verify(const Pod& pod, int) {
  {
    std::lock_guard lock(mu_);
    if (!bpf_ || !active_ || pod.ips.empty()) return {};
  }
  if (!podAddressesPresent(pod)) return Error::make("not_found", "the pod's addresses are not in the datapath's pod map");
  return {};
}

bool Datapath::podAddressesPresent(const Pod& pod) const {
  std::lock_guard lock(mu_);
  if (!bpf_ || !active_ || pod.ips.empty()) return false;
  const int fd = bpf_map__fd((*bpf_)->maps.colo_pods);
  for (const auto& ip : pod.ips) {
    auto a = parseAddress(ip);
    colo_pod_info info{};
    if (!a || ::bpf_map_lookup_elem(fd, &a.value(), &info) != 0) return false;
  }
  return true;
}

void Datapath::syncMap(const std::vector<Pod>& pods) {
  if (!bpf_) {
    pods_.clear();
    for (const auto& p : pods) pods_[p.key] = recordFor(p);
    publishPods();
    return;
  }
  const int fd = bpf_map__fd((*bpf_)->maps.colo_pods);
  std::map<std::vector<std::uint32_t>, std::uint32_t> want;  // address -> flags
  pods_.clear();
  if (active_) {
    for (const auto& p : pods) {
      PodRecord r = recordFor(p);
      std::vector<std::vector<std::uint32_t>> keys;
      for (const auto& ip : p.ips) {
        auto a = parseAddress(ip);
        if (!a) continue;
        keys.push_back({a->family, a->addr[0], a->addr[1], a->addr[2], a->addr[3]});
        // An earlier colo-node's guard saw this pod read blocking (or with splice(2)) on one of
        // its addresses: it stays withdrawn, on all of them (flagsFor, below).
        colo_pod_info info{};
        if (splice_ == Splice::PerPod && ::bpf_map_lookup_elem(fd, &a.value(), &info) == 0 && (info.flags & COLO_POD_UNSAFE)) {
          r.unsafe = true;
          r.unsafeWhy = std::string((info.flags & COLO_POD_SEEN_SPLICE) ? "a splice(2) read" : "a blocking read") + " on a spliced socket of " + ip +
                        " was seen before colo-node restarted";
        }
      }
      for (auto& k : keys) want[std::move(k)] = flagsFor(r);
      pods_[p.key] = r;
    }
  }
  publishPods();
  std::vector<colo_addr> stale;
  colo_addr key{}, next{};
  const void* prev = nullptr;
  while (::bpf_map_get_next_key(fd, prev, &next) == 0) {
    if (!want.count({next.family, next.addr[0], next.addr[1], next.addr[2], next.addr[3]})) stale.push_back(next);
    key = next;
    prev = &key;
  }
  for (auto& s : stale) ::bpf_map_delete_elem(fd, &s);
  for (const auto& [w, flags] : want) {
    colo_addr a{w[0], {w[1], w[2], w[3], w[4]}};
    colo_pod_info info{};
    const std::uint32_t kept = ::bpf_map_lookup_elem(fd, &a, &info) == 0 ? keptGuardBits(info.flags) : 0;
    info = colo_pod_info{};
    info.flags = flags | kept;
    ::bpf_map_update_elem(fd, &a, &info, BPF_ANY);
  }
  spdlog::info("datapath: pod map holds {} addresses ({} stale removed)", want.size(), stale.size());
}

void Datapath::sync(const std::vector<Pod>& pods) {
  std::vector<GuardEvent> early;
  {
    std::lock_guard lock(mu_);
    syncMap(pods);
    synced_ = true;
    early.swap(earlyGuardEvents_);
  }
  // What the guard saw while colo-node was down: logged and told (Event) now, once (the ring
  // hands each event out once).
  for (const auto& e : early) tellGuardEvent(e, true);
}

Status Datapath::uninstall(const std::string& pinDir) {
  std::error_code ec;
  if (!std::filesystem::exists(pinDir, ec)) return {};
  detachPinned(pinDir);  // the links first: nothing new is spliced or guarded while the maps go
  // Unpinning the link detaches sock_ops; unpinning the maps frees them (and the sockhash's
  // sk_msg attachment) once nothing else holds them.
  for (const auto& e : std::filesystem::directory_iterator(pinDir, ec)) {
    if (::unlink(e.path().c_str()) != 0) return Error::fromErrno("unlink(" + e.path().string() + ")");
  }
  if (::rmdir(pinDir.c_str()) != 0 && errno != ENOENT) return Error::fromErrno("rmdir(" + pinDir + ")");
  return {};
}

}  // namespace colo::node
