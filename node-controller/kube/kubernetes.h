// colo-node's Kubernetes mode: the API client, the watch of this node's pods, and Events, wired
// to the pod lifecycle.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "config.h"
#include "kube/api_client.h"
#include "kube/event_recorder.h"
#include "kube/pod_watcher.h"
#include "kube/resource_watcher.h"
#include "kube/service_cache.h"
#include "pods/pod_lifecycle.h"

namespace colo::node::kube {

struct DaemonSetState {
  bool exists = false;
  bool deleting = false;  // deletionTimestamp set
  std::string uid;
};

class Kubernetes final : public PodWatcherSink {
 public:
  Kubernetes(ApiEndpoint endpoint, const Config& config, PodLifecycle& lifecycle, Metrics& metrics);
  ~Kubernetes() override;
  void start();
  void stop();
  PodWatcher& watcher() { return *watcher_; }
  EventRecorder& events() { return *events_; }
  // Services and EndpointSlices of the whole cluster, for dial by Kubernetes name.
  const ServiceCache& services() const { return services_; }
  ServiceCache& services() { return services_; }
  nlohmann::json status() const { return watcher_->status(); }
  // The endpoint from config: kubeconfig when set, else in-cluster.
  static Expected<ApiEndpoint> endpointFrom(const Config& config);
  // Whether the DaemonSet is gone or being deleted (colo is being uninstalled), as opposed to
  // still there (a rolling update or a node drain).
  Expected<bool> daemonSetGone(const std::string& ns, const std::string& name);
  // The DaemonSet as the API says it is now (an error when it cannot tell: 401/403, unreachable).
  Expected<DaemonSetState> daemonSet(const std::string& ns, const std::string& name);
  // Called (on the watch thread) with colo-node's own pod whenever the watch reports it.
  void setOwnPodHandler(std::function<void(const PodMeta&)> handler) { ownPod_ = std::move(handler); }

  void synced(const std::vector<PodMeta>& all, std::int64_t listStartUnixMs, const std::set<std::string>& unidentified) override;
  std::string upserted(const PodMeta& pod) override;
  void deleted(const PodMeta& pod) override;

 private:
  PodLifecycle& lifecycle_;
  std::string node_, ownNamespace_, ownName_;
  std::function<void(const PodMeta&)> ownPod_;
  std::unique_ptr<ApiClient> api_;
  std::unique_ptr<PodWatcher> watcher_;
  std::unique_ptr<EventRecorder> events_;
  ServiceCache services_;
  std::unique_ptr<ResourceWatcher> serviceWatcher_, sliceWatcher_;
};

}  // namespace colo::node::kube
