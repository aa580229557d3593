#include "kube/kubernetes.h"

#include <spdlog/spdlog.h>

namespace colo::node::kube {

Expected<ApiEndpoint> Kubernetes::endpointFrom(const Config& config) {
  if (!config.kubeconfig.empty()) return kubeconfigEndpoint(config.kubeconfig);
  return inClusterEndpoint(config.serviceAccountDir);
}

Kubernetes::Kubernetes(ApiEndpoint endpoint, const Config& config, PodLifecycle& lifecycle, Metrics& metrics)
    : lifecycle_(lifecycle), node_(config.nodeName), ownNamespace_(config.podNamespace), ownName_(config.podName), api_(std::make_unique<ApiClient>(std::move(endpoint))) {
  WatcherSettings ws;
  ws.nodeName = config.nodeName;
  ws.pageSize = std::stoi(config.listPageSize);
  ws.watchTimeoutSeconds = std::stoi(config.watchTimeoutSeconds);
  watcher_ = std::make_unique<PodWatcher>(*api_, ws, *this, metrics);
  events_ = std::make_unique<EventRecorder>(*api_, config.nodeName, metrics);
  serviceWatcher_ = std::make_unique<ResourceWatcher>(
      *api_, "/api/v1/services", "services", ws,
      ResourceWatcher::Sink{[this] { services_.beginServices(); }, [this](const nlohmann::json& o) { services_.addService(o); },
                            [this] { services_.endServices(); },
                            [this](const std::string& type, const nlohmann::json& o) { services_.serviceEvent(type, o); }},
      metrics);
  sliceWatcher_ = std::make_unique<ResourceWatcher>(
      *api_, "/apis/discovery.k8s.io/v1/endpointslices", "endpointslices", ws,
      ResourceWatcher::Sink{[this] { services_.beginSlices(); }, [this](const nlohmann::json& o) { services_.addSlice(o); },
                            [this] { services_.endSlices(); },
                            [this](const std::string& type, const nlohmann::json& o) { services_.sliceEvent(type, o); }},
      metrics);
}

Kubernetes::~Kubernetes() { stop(); }

void Kubernetes::start() {
  events_->start();
  watcher_->start();
  serviceWatcher_->start();
  sliceWatcher_->start();
  spdlog::info("kube: watching pods of node {} at {}:{} ({})", node_, api_->endpoint().host, api_->endpoint().port, api_->endpoint().source);
}

void Kubernetes::stop() {
  if (watcher_) watcher_->stop();
  if (serviceWatcher_) serviceWatcher_->stop();
  if (sliceWatcher_) sliceWatcher_->stop();
  if (events_) events_->stop();
}

Expected<DaemonSetState> Kubernetes::daemonSet(const std::string& ns, const std::string& name) {
  auto res = api_->request("GET", "/apis/apps/v1/namespaces/" + ns + "/daemonsets/" + name, "", std::chrono::seconds(3));
  if (!res) return res.error();
  if (res->status == 404) return DaemonSetState{};
  if (res->status != 200) return Error::make("unavailable", "GET daemonset " + ns + "/" + name + ": HTTP " + std::to_string(res->status));
  auto j = nlohmann::json::parse(res->body, nullptr, false);
  if (!j.is_object() || !j.contains("metadata") || !j["metadata"].is_object()) {
    return Error::make("unavailable", "GET daemonset " + ns + "/" + name + ": not a DaemonSet");
  }
  const auto& md = j["metadata"];
  DaemonSetState st;
  st.exists = true;
  st.deleting = md.contains("deletionTimestamp") && !md["deletionTimestamp"].is_null();
  st.uid = md.value("uid", std::string());
  return st;
}

Expected<bool> Kubernetes::daemonSetGone(const std::string& ns, const std::string& name) {
  auto st = daemonSet(ns, name);
  if (!st) return st.error();
  return !st->exists || st->deleting;
}

void Kubernetes::synced(const std::vector<PodMeta>& all, std::int64_t listStartUnixMs, const std::set<std::string>& unidentified) {
  for (const auto& pod : all) {
    if (ownPod_ && !ownName_.empty() && pod.name == ownName_ && pod.podNamespace == ownNamespace_) ownPod_(pod);
  }
  const auto released = lifecycle_.syncAll(all, listStartUnixMs, unidentified);
  if (released) spdlog::info("kube: {} pods held here are gone from the API; released", released);
}

std::string Kubernetes::upserted(const PodMeta& pod) {
  if (ownPod_ && !ownName_.empty() && pod.name == ownName_ && pod.podNamespace == ownNamespace_) ownPod_(pod);
  if (pod.nodeName != node_) return "other_node";  // the field selector's job; never trust it blindly
  return toString(lifecycle_.applyMeta(pod));
}

void Kubernetes::deleted(const PodMeta& pod) { lifecycle_.apiDeleted(pod.uid); }

}  // namespace colo::node::kube
