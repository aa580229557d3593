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
  metrics_.set("colo_datapath_active", {}, 0);
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

void Datapath::start() {
  if (config_.mode == "off") {
    state_ = "off";
    reason_ = "disabled by configuration (datapath: off)";
    spdlog::info("datapath: {}", reason_);
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
  active_ = true;  // the self-test needs the maps live
  selftest_ = runSelfTest(SelfTestHooks{
      [this](const std::string& ip) { return setAddress(ip, true); },
      [this](const std::string& ip) { (void)setAddress(ip, false); },
      [this] { return stats().msgsRedirected; },
  });
  for (const auto& [name, result] : selftest_.checks) {
    metrics_.set("colo_datapath_selftest", {{"check", name}}, result == "ok" ? 1 : 0);
  }
  for (const auto& [what, why] : selftest_.skipped) spdlog::warn("datapath: self-test skipped {}: {}", what, why);
  if (!selftest_.passed() && config_.mode != "on") {
    active_ = false;
    state_ = "off";
    reason_ = "self-test failed: " + selftest_.failures();
    spdlog::warn("datapath: off: {}. Set datapath: on to force it.", reason_);
    // Detach sock_ops so that nothing new is spliced. The maps stay pinned: connections spliced
    // by an earlier run keep their path until they close.
    ::unlink((config_.pinDir + kLinkPin).c_str());
    bpf_.reset();
  } else {
    state_ = "on";
    reason_ = selftest_.passed() ? "self-test passed" : "forced on despite the self-test: " + selftest_.failures();
    spdlog::info("datapath: on ({})", reason_);
  }
  publish();
}

void Datapath::publish() { metrics_.set("colo_datapath_active", {}, active_ ? 1 : 0); }

nlohmann::json Datapath::status() const {
  nlohmann::json checks = nlohmann::json::object();
  for (const auto& [k, v] : selftest_.checks) checks[k] = v;
  nlohmann::json out = {{"state", state_}, {"reason", reason_}, {"mode", config_.mode}, {"cgroup", cgroup_},
                        {"pinDir", config_.pinDir}, {"selftest", checks}};
  if (!selftest_.skipped.empty()) out["selftestSkipped"] = selftest_.skipped;
  return out;
}

DatapathStats Datapath::stats() const {
  DatapathStats out;
  if (!bpf_) return out;
  const int fd = bpf_map__fd((*bpf_)->maps.colo_stats);
  const int cpus = libbpf_num_possible_cpus();
  std::vector<std::uint64_t> values(static_cast<std::size_t>(cpus > 0 ? cpus : 1));
  std::uint64_t* fields[] = {&out.socketsInserted, &out.insertFailed, &out.skippedNotPod, &out.msgsRedirected, &out.bytesRedirected, &out.fallbacks};
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
  return out;
}

Status Datapath::setAddress(const std::string& cidr, bool present) {
  if (!bpf_) return Error::make("unavailable", "datapath not loaded");
  auto a = parseAddress(cidr);
  if (!a) return a.error();
  const int fd = bpf_map__fd((*bpf_)->maps.colo_pods);
  if (present) {
    colo_pod_info info{};
    if (::bpf_map_update_elem(fd, &a.value(), &info, BPF_ANY) != 0) return Error::fromErrno("bpf_map_update_elem(colo_pods)");
  } else {
    ::bpf_map_delete_elem(fd, &a.value());
  }
  return {};
}

Status Datapath::attach(Pod& pod, int, bool, std::vector<std::string>&) {
  std::lock_guard lock(mu_);
  if (!active_) return {};
  for (const auto& ip : pod.ips) {
    if (auto s = setAddress(ip, true); !s) spdlog::warn("datapath: pod {}: {}", pod.key, s.error().message);
  }
  return {};
}

Status Datapath::detach(const Pod& pod) {
  std::lock_guard lock(mu_);
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

void Datapath::sync(const std::vector<Pod>& pods) {
  std::lock_guard lock(mu_);
  if (!bpf_) return;
  const int fd = bpf_map__fd((*bpf_)->maps.colo_pods);
  std::set<std::vector<std::uint32_t>> want;
  if (active_) {
    for (const auto& p : pods) {
      for (const auto& ip : p.ips) {
        if (auto a = parseAddress(ip)) want.insert({a->family, a->addr[0], a->addr[1], a->addr[2], a->addr[3]});
      }
    }
  }
  std::vector<colo_addr> stale;
  colo_addr key{}, next{};
  const void* prev = nullptr;
  while (::bpf_map_get_next_key(fd, prev, &next) == 0) {
    if (!want.count({next.family, next.addr[0], next.addr[1], next.addr[2], next.addr[3]})) stale.push_back(next);
    key = next;
    prev = &key;
  }
  for (auto& s : stale) ::bpf_map_delete_elem(fd, &s);
  colo_pod_info info{};
  for (const auto& w : want) {
    colo_addr a{w[0], {w[1], w[2], w[3], w[4]}};
    ::bpf_map_update_elem(fd, &a, &info, BPF_ANY);
  }
  spdlog::info("datapath: pod map holds {} addresses ({} stale removed)", want.size(), stale.size());
}

Status Datapath::uninstall(const std::string& pinDir) {
  std::error_code ec;
  if (!std::filesystem::exists(pinDir, ec)) return {};
  // Unpinning the link detaches sock_ops; unpinning the maps frees them (and the sockhash's
  // sk_msg attachment) once nothing else holds them.
  for (const auto& e : std::filesystem::directory_iterator(pinDir, ec)) {
    if (::unlink(e.path().c_str()) != 0) return Error::fromErrno("unlink(" + e.path().string() + ")");
  }
  if (::rmdir(pinDir.c_str()) != 0 && errno != ENOENT) return Error::fromErrno("rmdir(" + pinDir + ")");
  return {};
}

}  // namespace colo::node
