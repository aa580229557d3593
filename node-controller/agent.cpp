#include "agent.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>

#include "colo/common/files.h"
#include "colo/common/netns.h"
#include "colo/common/quantity.h"
#include "colo/common/spool.h"
#include "install/uninstall_mark.h"

namespace colo::node {

Agent::Agent(Config config) : config_(std::move(config)), registry_(config_.stateDir) {
  metrics_.describe("colo_build_info", "gauge", "colo-node version and mode.");
  metrics_.set("colo_build_info", {{"version", COLO_VERSION}, {"mode", config_.mode}}, 1);
  metrics_.describe("colo_pods_released_stale_total", "counter", "Restored pods dropped at start because their netns was gone.");
  metrics_.add("colo_pods_released_stale_total", {}, 0);
  metrics_.describe("colo_restore_seconds", "gauge", "Time the last start took to restore pods and their endpoints.");
}

Agent::~Agent() { stop(); }

Status Agent::start() {
  // Every pod connection is a descriptor: take what the hard limit allows (the caps keep any one
  // pod's share small; running out anyway is survived, see SeqpacketServer::acceptFrom).
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
  const std::string socketDir = std::filesystem::path(config_.cniSocket).parent_path().string();
  if (auto s = files::makeDirs(config_.runDir, 0755); !s) return s;
  if (auto s = files::makeDirs(socketDir, 0700); !s) return s;  // root only: colo-cni runs as root
  if (auto s = files::makeDirs(config_.stateDir, 0700); !s) return s;
  ::unlink((config_.runDir + "/shutdown").c_str());  // the last stop's decision is not this one's

  hugepages_ = std::make_unique<HugepageManager>(metrics_, *quantity::parseBytes(config_.hugepageSize),
                                                 *quantity::parseBytes(config_.hugepagesBudget));
  if (auto s = hugepages_->probe(); !s) {
    hugepagesStatus_ = s.error().message;
    spdlog::warn("hugepages: {}; pods asking for hugepages will be refused", s.error().message);
  }

  podApi_ = std::make_unique<PodApi>(config_, registry_, metrics_);
  ServerLimits podLimits = PodApi::serverLimits();
  podLimits.fdReserve = kCniFdReserve;  // pods together never take what pod creation needs
  podServer_ = std::make_unique<SeqpacketServer>(
      "pods", metrics_, [this](wire::Message& m, const ConnInfo& c) { return podApi_->handle(m, c); },
      [this](const ConnInfo& c) { return podApi_->admit(c); }, [this](const ConnInfo& c) { podApi_->connectionClosed(c); }, podLimits);
  // Incoming-dial events reach listeners through their connection's bounded queue.
  podApi_->broker().setEventSink([this](std::uint64_t connId, Reply event) { return podServer_->post(connId, std::move(event)); });
  if (auto s = podServer_->start(); !s) return s;
  endpoints_ = std::make_unique<EndpointManager>(config_, *podServer_, *hugepages_, metrics_);
  if (auto s = endpoints_->prepare(); !s) return s;
  datapath_ = std::make_unique<Datapath>(DatapathConfig{config_.datapath, config_.cgroupPath, config_.bpfPinDir, config_.nodeName, config_.legacyBpfPinDir}, metrics_);
  datapath_->start();
  serviceTranslation_ = std::make_unique<ServiceTranslation>(
      ServiceTranslationConfig{config_.serviceTranslation, config_.datapath, config_.cgroupPath, config_.bpfPinDir, config_.nodeName}, metrics_);
  hooks_ = std::make_unique<CompositeHooks>(std::vector<PodHooks*>{endpoints_.get(), datapath_.get(), serviceTranslation_.get()});
  lifecycle_ = std::make_unique<PodLifecycle>(registry_, *hooks_, metrics_);

  auto host = netns::current();
  if (!host) return host.error();
  if (auto s = makeKubernetes(); !s) return s;
  cni_ = std::make_unique<CniHandler>(registry_, *lifecycle_, metrics_, *host, cniOptions());

  // Before anything is served: pods from the state dir, then what colo-cni spooled while we were
  // down, on the owner thread like every other change to pod state.
  const auto t0 = std::chrono::steady_clock::now();
  auto loaded = registry_.load();
  if (!loaded) return loaded.error();
  std::size_t spooled = 0;
  lifecycle_->run(std::chrono::steady_clock::time_point::max(), [&] {
    reconcileRestored();
    spooled = cni_->applySpool(spool::dirFor(config_.cniSocket));
  });
  std::vector<Pod> active;
  for (auto& p : registry_.list()) {
    if (p.active) active.push_back(std::move(p));
  }
  datapath_->sync(active);
  serviceTranslation_->sync(active);
  serviceTranslation_->start(kube_ ? &kube_->services() : nullptr);
  lifecycle_->updateGauges();
  const double restoreSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  metrics_.set("colo_restore_seconds", {}, restoreSeconds);
  spdlog::info("registry: {} pods restored from {}, {} still alive, {} spooled CNI requests applied, endpoints back in {:.1f} ms", *loaded,
               config_.stateDir, registry_.size(), spooled, restoreSeconds * 1000);
  lifecycle_->startSweep(std::chrono::seconds(30));
  if (kube_) kube_->start();

  ServerLimits cniLimits;  // one tag (root's colo-cni processes): only the server-wide cap matters
  cniLimits.maxConnectionsPerTag = cniLimits.maxConnections;
  cniLimits.maxQueuedBytesPerTag = 16 << 20;
  cniServer_ = std::make_unique<SeqpacketServer>(
      "cni", metrics_,
      [this](wire::Message& m, const ConnInfo&) -> Reply { return cni_->handle(m); },
      nullptr, nullptr, cniLimits);
  if (auto s = cniServer_->start(); !s) return s;
  if (auto s = cniServer_->listen(config_.cniSocket, 0600, "cni"); !s) return s;
  if (!config_.cniChainStatusFile.empty()) {
    chain_ = std::make_unique<ChainStatus>(config_.cniChainStatusFile, metrics_, [this](bool chained, const std::string& msg) {
      ownPodEvent(chained ? "Normal" : "Warning", chained ? "ColoChained" : "ColoNotChained", msg);
    });
    chain_->start();
  }

  if (!config_.httpAddress.empty()) {
    http_ = std::make_unique<HttpServer>(HttpSources{
        [this] { return readiness(); },
        [this] {
          (void)datapath_->stats();  // refreshes the datapath counters
          (void)serviceTranslation_->stats();
          if (kube_) kube_->watcher().publishMetrics();
          return metrics_.render();
        },
        [this] { return debugPods(); }, config_.exposeDebugPods == "true"});
    if (auto s = http_->start(config_.httpAddress); !s) return s;
  }
  spdlog::info("colo-node {} ready on node {} (mode {})", COLO_VERSION, config_.nodeName, config_.mode);
  return {};
}

// A pod whose netns vanished while we were down will get no DEL we could act on: release it now.
// A pod whose netns is still there is held again the way ADD holds one (and keeps its hugepage mount).
void Agent::reconcileRestored() {
  std::vector<std::string> held;
  for (auto pod : registry_.list()) {
    auto fd = pod.netnsPath.empty() ? Expected<UniqueFd>(Error::make("not_found", "no netns path recorded")) : netns::open(pod.netnsPath);
    std::optional<netns::Identity> id;
    if (fd) {
      if (auto i = netns::inspect(fd->get())) id = *i;
    }
    if (pod.netns.cookie == 0) {
      // Recorded before netns cookies: inode and device match a netns re-created at the same path
      // too, and nothing else tells them apart. Released rather than bound into a stranger.
      spdlog::warn("registry: pod {} ({}/{}): state has no netns cookie (written by an older colo-node); cannot prove netns {} is "
                   "the pod's; released",
                   pod.key, pod.podNamespace, pod.name, pod.netnsPath);
      id.reset();
    }
    if (!id || !(*id == pod.netns)) {
      spdlog::warn("registry: pod {} ({}/{}): netns {} is gone or replaced since colo-node last ran; released", pod.key,
                   pod.podNamespace, pod.name, pod.netnsPath);
      pod.undoPending = true;  // whatever is left of its endpoint directory and mount goes too
      (void)lifecycle_->release(pod, "stale");
      metrics_.add("colo_pods_released_stale_total");
      if (registry_.get(pod.key)) held.push_back(pod.key);  // still pending: keep its directory for the retry
      continue;
    }
    held.push_back(pod.key);
    cni_->restore(std::move(pod), std::move(fd.value()));
  }
  endpoints_->removeOrphans(held);
}

Status Agent::makeKubernetes() {
  lifecycle_->setDatapathNote([this]() -> std::string {
    if (datapath_->active()) return {};
    const auto st = datapath_->status();
    return "colo's transparent splice is off on node " + config_.nodeName + " (" + st.value("reason", std::string("unknown")) +
           "); the colo endpoint and channels work, TCP between pods takes the normal path";
  });
  if (config_.mode != "kubernetes") return {};
  auto ep = kube::Kubernetes::endpointFrom(config_);
  if (!ep) return Error{ep.error().code, "kubernetes mode: " + ep.error().message, ep.error().errnum};
  kube_ = std::make_unique<kube::Kubernetes>(std::move(*ep), config_, *lifecycle_, metrics_);
  kube_->setOwnPodHandler([this](const PodMeta& pod) { ownPodSeen(pod); });
  lifecycle_->setEventSink([this](const Pod& p, const std::string& type, const std::string& reason, const std::string& msg) {
    kube_->events().record(p, type, reason, msg);
  });
  datapath_->setEventSink([this](const Pod& p, const std::string& type, const std::string& reason, const std::string& msg) {
    kube_->events().record(p, type, reason, msg);
  });
  podApi_->setServiceCache(&kube_->services());  // dial by Kubernetes name
  return {};
}

CniOptions Agent::cniOptions() {
  CniOptions o;
  if (!kube_) return o;
  o.holdDormant = true;
  o.lookup = [this](const std::string& ns, const std::string& name, const std::string& uid, std::chrono::steady_clock::time_point deadline) {
    return kube_->watcher().lookup(ns, name, uid, deadline);
  };
  return o;
}

void Agent::ownPodEvent(const std::string& type, const std::string& reason, const std::string& message) {
  if (!kube_ || config_.podName.empty()) return;
  Pod self;
  self.podNamespace = config_.podNamespace;
  self.name = config_.podName;
  {
    std::lock_guard lock(ownMu_);
    self.uid = !config_.podUid.empty() ? config_.podUid : ownUid_;
  }
  kube_->events().record(self, type, reason, message);
}

void Agent::ownPodSeen(const PodMeta& pod) {
  {
    std::lock_guard lock(ownMu_);
    ownUid_ = pod.uid;
  }
  if (annotation(pod.annotations, kUninstallAnnotation) != "true") {
    if (uninstallMarked_.exchange(false)) spdlog::info("shutdown: the uninstall mark on pod {}/{} is gone: colo stays on this node", pod.podNamespace, pod.name);
    return;
  }
  {
    std::lock_guard lock(ownMu_);
    markDaemonSetUid_ = annotation(pod.annotations, kUninstallDaemonSetAnnotation);
    char* end = nullptr;
    const std::string at = annotation(pod.annotations, kUninstallAtAnnotation);
    const long long secs = at.empty() ? 0 : std::strtoll(at.c_str(), &end, 10);
    // A hook that wrote no time (or an unreadable one): the mark counts from when it was seen.
    markAt_ = secs > 0 && end && *end == '\0' ? std::chrono::system_clock::time_point(std::chrono::seconds(secs))
                                              : (uninstallMarked_ ? markAt_ : std::chrono::system_clock::now());
  }
  if (uninstallMarked_.exchange(true)) return;
  spdlog::info("shutdown: pod {}/{} is marked {}=true (helm uninstall's pre-delete hook): colo leaves this node when colo-node stops "
               "and its DaemonSet is gone",
               pod.podNamespace, pod.name, kUninstallAnnotation);
  ownPodEvent("Normal", kUninstallAckReason,
              "colo-node on node " + config_.nodeName + " will take colo off this node (chain entry, binary, datapath, mounts) when it stops");
}

// Whether colo is leaving this node, at SIGTERM. Leaving takes the DaemonSet gone (or being deleted,
// or replaced by another of the same name); when the API cannot tell (Helm deleted colo-node's RBAC
// with the DaemonSet), a recent uninstall mark from the pre-delete hook decides. A mark whose
// DaemonSet is still there and not being deleted is a helm uninstall that stopped after its hook:
// ignored, so a later rollout or a container restart keeps colo.
bool Agent::leavingAtShutdown() {
  const bool marked = uninstallMarked_;
  std::string markUid;
  std::chrono::system_clock::time_point markAt;
  {
    std::lock_guard lock(ownMu_);
    markUid = markDaemonSetUid_;
    markAt = markAt_;
  }
  const std::string ds = config_.podNamespace + "/" + config_.daemonSetName;
  if (!kube_ || config_.daemonSetName.empty()) {
    if (marked) spdlog::info("shutdown: marked for uninstall by the pre-delete hook (no DaemonSet to check): removing colo from this node");
    return marked;
  }
  auto st = kube_->daemonSet(config_.podNamespace, config_.daemonSetName);
  if (!st) {
    if (!marked) {
      spdlog::warn("shutdown: cannot tell whether DaemonSet {} is gone ({}); keeping colo on this node", ds, st.error().message);
      return false;
    }
    const auto age = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - markAt);
    if (age < kUninstallMarkTtl) {
      spdlog::info("shutdown: marked for uninstall by the pre-delete hook {} s ago and the API cannot confirm DaemonSet {} ({}: its RBAC "
                   "is deleted with it): removing colo from this node",
                   age.count(), ds, st.error().message);
      return true;
    }
    spdlog::warn("shutdown: the uninstall mark is {} s old and the API cannot tell whether DaemonSet {} is gone ({}); keeping colo on "
                 "this node",
                 age.count(), ds, st.error().message);
    return false;
  }
  const bool replaced = st->exists && !markUid.empty() && !st->uid.empty() && st->uid != markUid;
  if (!st->exists || st->deleting || (marked && replaced)) {
    spdlog::info("shutdown: DaemonSet {} {}: colo is being uninstalled, removing it from this node", ds,
                 !st->exists ? "is gone" : st->deleting ? "is being deleted" : "was replaced since the uninstall mark");
    return true;
  }
  if (marked) {
    spdlog::warn("shutdown: pod marked for uninstall, but DaemonSet {} is still there and not being deleted (the uninstall stopped after "
                 "its hook): mark ignored, keeping pods, datapath and chain",
                 ds);
  } else {
    spdlog::info("shutdown: DaemonSet {} is still there: keeping pods, datapath and chain", ds);
  }
  return false;
}

void Agent::shutdown() {
  const bool leaving = leavingAtShutdown();
  stop();
  const std::string decisionFile = config_.runDir + "/shutdown";
  if (!leaving) {
    if (kube_) (void)files::writeAtomic(decisionFile, "keep\n", 0644);
    return;
  }
  for (auto pod : registry_.list()) {
    pod.undoPending = true;
    (void)lifecycle_->release(pod, "uninstall");
  }
  endpoints_->removeOrphans({});
  if (auto s = Datapath::uninstall(config_.bpfPinDir); !s) spdlog::warn("shutdown: {}", s.error().message);
  std::error_code ec;
  // colo 0.1.0's shared pin dir, if no upgraded colo-node took it over (datapath off, say) and no
  // current one owns it: its sock_ops link would stay attached after colo is gone.
  if (const std::string& legacy = config_.legacyBpfPinDir;
      !legacy.empty() && legacy != config_.bpfPinDir && std::filesystem::exists(legacy, ec)) {
    bool owned = false;
    for (const auto& e : std::filesystem::directory_iterator(legacy, ec)) owned = owned || e.path().filename().string().rfind("owner_", 0) == 0;
    if (owned) {
      spdlog::info("shutdown: {} belongs to another colo-node; left alone", legacy);
    } else if (auto s = Datapath::uninstall(legacy); !s) {
      spdlog::warn("shutdown: colo 0.1.0's pin dir: {}", s.error().message);
    } else {
      spdlog::info("shutdown: colo 0.1.0's pin dir {} unpinned (its sock_ops link detached)", legacy);
    }
  }
  std::filesystem::remove_all(config_.stateDir, ec);
  (void)files::writeAtomic(decisionFile, "uninstall\n", 0644);
  spdlog::info("shutdown: colo removed from this node (pods released, {} unpinned, {} removed)", config_.bpfPinDir, config_.stateDir);
}

void Agent::stop() {
  if (datapath_) datapath_->stopGuard();  // its events stop before the API client they go to
  if (chain_) chain_->stop();
  if (kube_) kube_->stop();
  if (serviceTranslation_) serviceTranslation_->stop();  // after the watchers that wake it
  if (http_) http_->stop();
  if (cniServer_) cniServer_->stop();
  if (lifecycle_) lifecycle_->stop();  // after every sender of commands, before the pods server its commands use
  if (podServer_) podServer_->stop();
}

nlohmann::json Agent::readiness() const {
  // A loop that has not gone round for kStalled is stuck in something it should never wait on.
  constexpr auto kStalled = std::chrono::seconds(3);
  auto loopState = [&](const SeqpacketServer* s) -> std::string {
    if (!s || !s->running()) return "not serving";
    const auto since = s->sinceHeartbeat();
    return since > kStalled ? "stalled: its loop has not run for " + std::to_string(since.count()) + " ms" : "ok";
  };
  const std::string cniLoop = loopState(cniServer_.get()), podLoop = loopState(podServer_.get());
  const bool cniUp = cniLoop == "ok" && cniServer_->listenerCount() > 0;
  struct stat st{};
  const bool socketPresent = ::stat(config_.cniSocket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
  nlohmann::json checks = {
      {"cniSocket", cniLoop != "ok" ? cniLoop : cniUp && socketPresent ? "ok" : "not serving " + config_.cniSocket},
      {"podEndpoints", podLoop},
      {"registry", "ok"},
      {"hugepages", hugepagesStatus_},
      {"datapath", datapath_ ? datapath_->status() : nlohmann::json("not started")},
      {"serviceTranslation", serviceTranslation_ ? serviceTranslation_->status() : nlohmann::json("not started")},
  };
  if (kube_) checks["kubernetes"] = kube_->status();
  // Ready means pods of this node get colo: the chain counts when an installer reports it.
  const bool chained = !chain_ || chain_->chained();
  if (chain_) checks["cniChain"] = chain_->status();
  if (uninstallMarked_) checks["uninstall"] = "marked: colo leaves this node when colo-node stops";
  return {{"ready", cniUp && socketPresent && chained && podLoop == "ok"}, {"node", config_.nodeName}, {"mode", config_.mode}, {"checks", checks}};
}

nlohmann::json Agent::debugPods() const {
  nlohmann::json pods = nlohmann::json::array();
  for (const auto& p : registry_.list()) {
    auto j = toJson(p);
    const auto sp = datapath_ ? datapath_->podSplice(p) : PodSplice{"off", "the datapath is not started"};
    j["spliced"] = datapath_ && datapath_->podAddressesPresent(p) && sp.state == "spliced";
    j["splice"] = {{"state", p.active ? sp.state : "off"}, {"reason", p.active ? sp.reason : "colo is not on for this pod"}};
    pods.push_back(std::move(j));
  }
  return {{"node", config_.nodeName},
          {"pods", pods},
          {"hugepages", {{"pageSize", hugepages_->pageSize()}, {"budget", hugepages_->budget()}, {"reserved", hugepages_->used()}}}};
}

}  // namespace colo::node
