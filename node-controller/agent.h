// colo-node: owns the registry, the CNI socket, the pod endpoints, hugepages and the HTTP
// endpoints, and their lifetimes.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

#include "config.h"
#include "datapath/datapath.h"
#include "datapath/service_translation.h"
#include "endpoints/endpoint_manager.h"
#include "endpoints/pod_api.h"
#include "http/http_server.h"
#include "kube/kubernetes.h"
#include "hugepages/hugepage_manager.h"
#include "install/chain_status.h"
#include "metrics.h"
#include "pods/cni_handler.h"
#include "pods/registry.h"
#include "server/seqpacket_server.h"

namespace colo::node {

// Descriptors the pods' server leaves free under RLIMIT_NOFILE for the CNI path (its connections,
// the netns, a new pod's two listeners, mounts, state files, several ADDs at once) and the rest
// of colo-node: pods' connections and slow requests are refused before they would take them.
inline constexpr std::size_t kCniFdReserve = 128;

class Agent {
 public:
  explicit Agent(Config config);
  ~Agent();
  Status start();
  void stop();
  // SIGTERM: decides (in Kubernetes mode, from the DaemonSet) whether colo is leaving the node;
  // stops; and if it is leaving, removes endpoints, mounts, pinned objects and state, and tells
  // the installer sidecar through <runDir>/shutdown.
  void shutdown();
  nlohmann::json readiness() const;
  nlohmann::json debugPods() const;
  int httpPort() const { return http_ ? http_->port() : 0; }

 private:
  void reconcileRestored();
  Status makeKubernetes();  // made, not started: it starts once restore is done
  CniOptions cniOptions();
  // An Event on colo-node's own pod (the chain's state, the uninstall acknowledgement).
  void ownPodEvent(const std::string& type, const std::string& reason, const std::string& message);
  void ownPodSeen(const PodMeta& pod);
  bool leavingAtShutdown();
  Config config_;
  Metrics metrics_;
  Registry registry_;
  std::unique_ptr<HugepageManager> hugepages_;
  std::unique_ptr<PodApi> podApi_;
  std::unique_ptr<SeqpacketServer> podServer_;
  std::unique_ptr<EndpointManager> endpoints_;
  std::unique_ptr<Datapath> datapath_;
  std::unique_ptr<ServiceTranslation> serviceTranslation_;
  std::unique_ptr<CompositeHooks> hooks_;
  std::unique_ptr<PodLifecycle> lifecycle_;
  std::unique_ptr<kube::Kubernetes> kube_;
  std::unique_ptr<CniHandler> cni_;
  std::unique_ptr<SeqpacketServer> cniServer_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<ChainStatus> chain_;
  std::atomic<bool> uninstallMarked_{false};
  std::mutex ownMu_;
  std::string ownUid_;
  std::string markDaemonSetUid_;                   // the uninstall mark's DaemonSet (may be empty)
  std::chrono::system_clock::time_point markAt_{};  // when the hook set it
  std::string hugepagesStatus_ = "ok";
};

}  // namespace colo::node
