#include "datapath/service_translation.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>

#include "colo/common/files.h"
#include "colo/common/netns.h"
#include "colo/common/unique_fd.h"
#include "colo_svc.skel.h"
#include "datapath/datapath.h"

namespace colo::node {
namespace {

// The programs and the names of their links. connect4/6 are owned by this process, never pinned:
// the kernel detaches them when colo-node exits (SIGTERM or SIGKILL alike), so nobody translates
// with a frontend map that nobody keeps true. getpeername4/6 stay pinned: sockets translated
// earlier keep answering the ClusterIP they dialled. (An older colo-node pinned connect4/6 at
// these names: such a pin is removed.)
struct ProgLink {
  const char* pin;
  bpf_program* (*prog)(colo_svc_bpf*);
  bool pinned;
};
const ProgLink kLinks[] = {
    {"/svc_connect4_link", [](colo_svc_bpf* s) { return s->progs.colo_svc_connect4; }, false},
    {"/svc_connect6_link", [](colo_svc_bpf* s) { return s->progs.colo_svc_connect6; }, false},
    {"/svc_getpeername4_link", [](colo_svc_bpf* s) { return s->progs.colo_svc_getpeername4; }, true},
    {"/svc_getpeername6_link", [](colo_svc_bpf* s) { return s->progs.colo_svc_getpeername6; }, true},
};

// The textual form inet_ntop gives, so that "2001:db8:0::1" and "2001:db8::1" compare equal;
// "" when `s` is no address (a CIDR's prefix length is dropped first).
std::string canonicalIp(const std::string& s) {
  const std::string ip = s.substr(0, s.find('/'));
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN];
  for (int family : {AF_INET, AF_INET6}) {
    if (::inet_pton(family, ip.c_str(), buf) == 1 && ::inet_ntop(family, buf, out, sizeof(out))) return out;
  }
  return "";
}

class MapWriter final : public FrontendWriter {
 public:
  explicit MapWriter(int fd) : fd_(fd) {}
  Status put(const colo_svc_key& key, const colo_svc_value& value) override {
    if (::bpf_map_update_elem(fd_, &key, &value, BPF_ANY) != 0) return Error::fromErrno("bpf_map_update_elem(colo_svc_frontends)");
    return {};
  }
  Status remove(const colo_svc_key& key) override {
    if (::bpf_map_delete_elem(fd_, &key) != 0 && errno != ENOENT) return Error::fromErrno("bpf_map_delete_elem(colo_svc_frontends)");
    return {};
  }

 private:
  int fd_;
};

// Every key of a hash map, deleted (what an earlier run left is not trusted).
void clearMap(int fd) {
  std::vector<std::uint8_t> key(64), next(64);
  while (::bpf_map_get_next_key(fd, nullptr, next.data()) == 0) {
    if (::bpf_map_delete_elem(fd, next.data()) != 0) break;
  }
}

}  // namespace

// The skeleton as an RAII type.
struct ServiceTranslation::Bpf {
  colo_svc_bpf* skel = nullptr;
  std::vector<bpf_link*> owned;  // connect4/6: detached when destroyed
  void detachOwned() {
    for (bpf_link* l : owned) bpf_link__destroy(l);
    owned.clear();
  }
  ~Bpf() {
    detachOwned();
    if (skel) colo_svc_bpf__destroy(skel);
  }
};

ServiceTranslation::ServiceTranslation(ServiceTranslationConfig config, Metrics& metrics) : config_(std::move(config)), metrics_(metrics) {
  metrics_.describe("colo_service_translation_active", "gauge", "1 when connects to node-local Services are translated to local backends.");
  metrics_.describe("colo_service_translations_total", "counter", "TCP connects to a Service's ClusterIP sent straight to a local backend pod.");
  metrics_.describe("colo_service_translation_skipped_total", "counter",
                    "TCP connects to a translated ClusterIP left alone, by reason (not_caller: not from an opted-in pod of this node).");
  metrics_.describe("colo_service_peername_restored_total", "counter", "getpeername answers turned back into the ClusterIP the application dialled.");
  metrics_.describe("colo_service_frontends", "gauge", "ClusterIP:port frontends translated on this node.");
  metrics_.describe("colo_service_backends", "gauge", "Local ready backends a translated Service's connects go to (over its frontends).");
  metrics_.set("colo_service_translation_active", {}, 0);
  metrics_.set("colo_service_frontends", {}, 0);
  if (auto id = netns::current()) hostCookie_ = id->cookie;
}

ServiceTranslation::~ServiceTranslation() { stop(); }

Status ServiceTranslation::load() {
  if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, nullptr) != 1) {
    return Error::make("unavailable", "the kernel does not offer BPF_PROG_TYPE_CGROUP_SOCK_ADDR");
  }
  if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_SK_STORAGE, nullptr) != 1) {
    return Error::make("unavailable", "the kernel does not offer BPF_MAP_TYPE_SK_STORAGE");
  }
  cgroup_ = config_.cgroupPath;
  if (cgroup_.empty()) {
    auto root = Datapath::detectCgroupRoot();
    if (!root) return root.error();
    cgroup_ = *root;
  }
  if (auto s = files::makeDirs(config_.pinDir, 0700); !s) return s;
  auto bpf = std::make_unique<Bpf>();
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = config_.pinDir.c_str());
  bpf->skel = colo_svc_bpf__open_opts(&opts);
  if (!bpf->skel) return Error::fromErrno("colo_svc_bpf__open_opts");
  if (int err = colo_svc_bpf__load(bpf->skel); err != 0) return Error::fromErrno("colo_svc_bpf__load (verifier or map mismatch)", -err);
  // Frontends an earlier run wrote may name pods gone since: start empty, the sync refills it.
  clearMap(bpf_map__fd(bpf->skel->maps.colo_svc_frontends));

  // A pinned getpeername link from an earlier run is updated in place (atomic replace); otherwise
  // a new link is made and pinned. connect4/6 are attached for this process's lifetime only.
  for (const auto& l : kLinks) {
    bpf_program* prog = l.prog(bpf->skel);
    const std::string path = config_.pinDir + l.pin;
    if (!l.pinned) {
      ::unlink(path.c_str());
      UniqueFd cg(::open(cgroup_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!cg) return Error::fromErrno("open(" + cgroup_ + ")");
      bpf_link* link = bpf_program__attach_cgroup(prog, cg.get());
      if (!link) return Error::fromErrno(std::string("attach ") + bpf_program__name(prog) + " to " + cgroup_);
      bpf->owned.push_back(link);
      continue;
    }
    if (bpf_link* old = bpf_link__open(path.c_str())) {
      const int err = bpf_link__update_program(old, prog);
      bpf_link__destroy(old);  // our fd only: the pin keeps it attached
      if (err != 0) return Error::fromErrno("bpf_link__update_program(" + path + ")", -err);
      continue;
    }
    UniqueFd cg(::open(cgroup_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg) return Error::fromErrno("open(" + cgroup_ + ")");
    bpf_link* link = bpf_program__attach_cgroup(prog, cg.get());
    if (!link) return Error::fromErrno(std::string("attach ") + bpf_program__name(prog) + " to " + cgroup_);
    const int err = bpf_link__pin(link, path.c_str());
    bpf_link__destroy(link);
    if (err != 0) return Error::fromErrno("bpf_link__pin(" + path + ")", -err);
  }
  bpf_ = std::move(bpf);
  return {};
}

void ServiceTranslation::start(kube::ServiceCache* cache) {
  const auto off = [this](std::string why) {
    state_ = "off";
    reason_ = std::move(why);
    // Links an earlier run pinned would keep translating with nobody keeping the map true.
    for (const auto& l : kLinks) ::unlink((config_.pinDir + l.pin).c_str());
  };
  if (config_.mode == "off" || (config_.mode == "auto" && config_.datapathMode == "off")) {
    off(config_.mode == "off" ? "disabled by configuration (serviceTranslation: off)"
                              : "datapath: off loads no BPF (serviceTranslation: auto); set serviceTranslation: on to translate anyway");
    spdlog::info("service translation: {}", reason_);
    return;
  }
  if (!cache) {
    off("no Kubernetes API watched (standalone mode): no Services to translate");
    spdlog::info("service translation: off: {}", reason_);
    return;
  }
  if (auto s = load(); !s) {
    off("cannot load: " + s.error().message);
    spdlog::warn("service translation: off: {}; Service traffic takes kube-proxy's path", reason_);
    return;
  }
  cache_ = cache;
  {
    std::lock_guard lock(mu_);
    const int fd = bpf_map__fd(bpf_->skel->maps.colo_svc_callers);
    clearMap(fd);
    for (const auto& [key, pod] : pods_) (void)setCaller(pod.first, true);
  }
  state_ = "on";
  reason_ = "connect4/6 and getpeername4/6 attached at " + cgroup_;
  active_ = true;
  metrics_.set("colo_service_translation_active", {}, 1);
  spdlog::info("service translation: on ({})", reason_);
  cache->setOnChange([this] { markDirty(); });
  thread_ = std::thread([this] { run(); });
  markDirty();
}

void ServiceTranslation::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Nothing keeps the frontends true from here: connects take kube-proxy's path again.
  if (bpf_) bpf_->detachOwned();
  if (active_) metrics_.set("colo_service_translation_active", {}, 0);
  active_ = false;
}

void ServiceTranslation::markDirty() {
  {
    std::lock_guard lock(mu_);
    ++dirtyGen_;
  }
  cv_.notify_all();
}

void ServiceTranslation::run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || dirtyGen_ != appliedGen_; });
    if (stopping_) return;
    // Changes come in bursts (a list, a rollout, a node's pods starting): one recompute for each
    // burst, at most 10 ms after its first change.
    cv_.wait_for(lock, std::chrono::milliseconds(10), [this] { return stopping_ || urgentGen_ > appliedGen_; });
    if (stopping_) return;
    const std::uint64_t gen = dirtyGen_;
    lock.unlock();
    applyOnce();
    lock.lock();
    appliedGen_ = gen;
    cv_.notify_all();
  }
}

void ServiceTranslation::applyOnce() {
  std::set<std::string> local;
  {
    std::lock_guard lock(mu_);
    local.insert(localIps_.begin(), localIps_.end());
  }
  const auto frontends = cache_->localFrontends(config_.node, [&](const std::string& ip) { return local.count(canonicalIp(ip)) > 0; });
  MapWriter writer(bpf_map__fd(bpf_->skel->maps.colo_svc_frontends));
  const auto changes = table_.apply(frontends, writer);
  for (const auto& c : changes) {
    const auto slash = c.service.find('/');
    const Labels labels{{"namespace", c.service.substr(0, slash)}, {"service", c.service.substr(slash + 1)}};
    if (c.backendsAfter == 0) {
      spdlog::info("service translation: {} no longer translated (no ready opted-in backend on this node, or it stopped asking for "
                   "node-local traffic): connects take kube-proxy's path",
                   c.service);
      metrics_.remove("colo_service_backends", labels);
    } else {
      if (c.backendsBefore == 0) spdlog::info("service translation: {} translated to {} local backend(s)", c.service, c.backendsAfter);
      else spdlog::info("service translation: {} now has {} local backend(s) (was {})", c.service, c.backendsAfter, c.backendsBefore);
      metrics_.set("colo_service_backends", labels, static_cast<double>(c.backendsAfter));
    }
  }
  metrics_.set("colo_service_frontends", {}, static_cast<double>(table_.frontends()));
  std::lock_guard lock(statusMu_);
  translated_ = table_.backendsPerService();
}

Status ServiceTranslation::setCaller(std::uint64_t cookie, bool present) {
  if (!bpf_ || cookie == 0 || cookie == hostCookie_) return {};  // the host's netns is never a caller (hostNetwork)
  const int fd = bpf_map__fd(bpf_->skel->maps.colo_svc_callers);
  if (present) {
    colo_svc_caller c{};
    if (::bpf_map_update_elem(fd, &cookie, &c, BPF_ANY) != 0) return Error::fromErrno("bpf_map_update_elem(colo_svc_callers)");
  } else if (::bpf_map_delete_elem(fd, &cookie) != 0 && errno != ENOENT) {
    return Error::fromErrno("bpf_map_delete_elem(colo_svc_callers)");
  }
  return {};
}

Status ServiceTranslation::attach(Pod& pod, int, bool, std::vector<std::string>&) {
  {
    std::lock_guard lock(mu_);
    if (auto old = pods_.find(pod.key); old != pods_.end()) {
      for (const auto& ip : old->second.second) localIps_.erase(localIps_.find(ip));
    }
    std::vector<std::string> ips;
    for (const auto& ip : pod.ips) {
      if (auto c = canonicalIp(ip); !c.empty()) ips.push_back(c);
    }
    for (const auto& ip : ips) localIps_.insert(ip);
    pods_[pod.key] = {pod.netns.cookie, std::move(ips)};
    if (auto s = setCaller(pod.netns.cookie, true); !s) spdlog::warn("service translation: pod {}: {}", pod.key, s.error().message);
  }
  markDirty();
  return {};  // never fails the pod: without it, its Service traffic takes kube-proxy's path
}

Status ServiceTranslation::detach(const Pod& pod) {
  std::unique_lock lock(mu_);
  auto it = pods_.find(pod.key);
  if (it == pods_.end()) return {};
  for (const auto& ip : it->second.second) localIps_.erase(localIps_.find(ip));
  const std::uint64_t cookie = it->second.first;
  pods_.erase(it);
  if (auto s = setCaller(cookie, false); !s) return s;
  if (!active_) return {};
  // A backend going away must stop being chosen before its netns goes (the runtime tears it down
  // right after this DEL): the sync thread applies it at once, and we wait for that, briefly.
  const std::uint64_t gen = urgentGen_ = ++dirtyGen_;
  cv_.notify_all();
  cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stopping_ || appliedGen_ >= gen; });
  return {};
}

void ServiceTranslation::sync(const std::vector<Pod>& pods) {
  {
    std::lock_guard lock(mu_);
    pods_.clear();
    localIps_.clear();
    for (const auto& p : pods) {
      std::vector<std::string> ips;
      for (const auto& ip : p.ips) {
        if (auto c = canonicalIp(ip); !c.empty()) ips.push_back(c);
      }
      for (const auto& ip : ips) localIps_.insert(ip);
      pods_[p.key] = {p.netns.cookie, std::move(ips)};
    }
    if (bpf_) {
      clearMap(bpf_map__fd(bpf_->skel->maps.colo_svc_callers));
      for (const auto& [key, pod] : pods_) (void)setCaller(pod.first, true);
    }
  }
  markDirty();
}

ServiceTranslationStats ServiceTranslation::stats() const {
  ServiceTranslationStats out;
  if (!bpf_) return out;
  const int fd = bpf_map__fd(bpf_->skel->maps.colo_svc_stats);
  const int cpus = libbpf_num_possible_cpus();
  std::vector<std::uint64_t> values(static_cast<std::size_t>(cpus > 0 ? cpus : 1));
  std::uint64_t* fields[] = {&out.translated, &out.notCaller, &out.peernameRestored};
  static_assert(COLO_SVC_STAT_MAX == 3);
  for (std::uint32_t k = 0; k < COLO_SVC_STAT_MAX; ++k) {
    if (::bpf_map_lookup_elem(fd, &k, values.data()) != 0) continue;
    for (auto v : values) *fields[k] += v;
  }
  metrics_.set("colo_service_translations_total", {}, static_cast<double>(out.translated));
  metrics_.set("colo_service_translation_skipped_total", {{"reason", "not_caller"}}, static_cast<double>(out.notCaller));
  metrics_.set("colo_service_peername_restored_total", {}, static_cast<double>(out.peernameRestored));
  return out;
}

nlohmann::json ServiceTranslation::status() const {
  nlohmann::json services = nlohmann::json::object();
  {
    std::lock_guard lock(statusMu_);
    for (const auto& [svc, n] : translated_) services[svc] = n;
  }
  std::size_t callers = 0;
  {
    std::lock_guard lock(mu_);
    callers = pods_.size();
  }
  const auto st = stats();
  return {{"state", state_}, {"reason", reason_}, {"mode", config_.mode}, {"cgroup", cgroup_}, {"callers", callers},
          {"services", services}, {"translations", st.translated}};
}

}  // namespace colo::node
