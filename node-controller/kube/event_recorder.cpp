#include "kube/event_recorder.h"

#include <spdlog/spdlog.h>

#include <random>

namespace colo::node::kube {

using json = nlohmann::json;

EventRecorder::EventRecorder(ApiClient& api, std::string nodeName, Metrics& metrics) : api_(api), node_(std::move(nodeName)), metrics_(metrics) {
  metrics_.describe("colo_kube_events_posted_total", "counter", "Kubernetes Events colo-node posted on pods, by result.");
}

EventRecorder::~EventRecorder() { stop(); }

void EventRecorder::start() { thread_ = std::thread([this] { run(); }); }

void EventRecorder::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

json EventRecorder::eventFor(const Pod& pod, const std::string& type, const std::string& reason, const std::string& message,
                             const std::string& node) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char suffix[17];
  std::snprintf(suffix, sizeof(suffix), "%016llx", static_cast<unsigned long long>(rng()));
  const std::string now = nowRfc3339();
  return {{"apiVersion", "v1"},
          {"kind", "Event"},
          {"metadata", {{"name", pod.name + "." + suffix}, {"namespace", pod.podNamespace}}},
          {"involvedObject", {{"apiVersion", "v1"}, {"kind", "Pod"}, {"name", pod.name}, {"namespace", pod.podNamespace}, {"uid", pod.uid}}},
          {"reason", reason},
          {"message", message.substr(0, 1024)},
          {"type", type},
          {"source", {{"component", "colo-node"}, {"host", node}}},
          {"reportingComponent", "colo.dev/colo-node"},
          {"reportingInstance", node},
          {"firstTimestamp", now},
          {"lastTimestamp", now},
          {"count", 1}};
}

void EventRecorder::record(const Pod& pod, const std::string& type, const std::string& reason, const std::string& message) {
  if (pod.uid.empty() || pod.name.empty() || pod.podNamespace.empty()) return;  // not a Kubernetes pod
  const auto now = std::chrono::steady_clock::now();
  const std::string key = pod.uid + "|" + reason + "|" + message;
  std::lock_guard lock(mu_);
  if (auto it = recent_.find(key); it != recent_.end() && now - it->second < std::chrono::minutes(10)) return;
  recent_[key] = now;
  if (recent_.size() > 10000) recent_.clear();
  if (queue_.size() >= 1000) {
    metrics_.add("colo_kube_events_posted_total", {{"result", "dropped"}});
    return;
  }
  queue_.push_back(eventFor(pod, type, reason, message, node_));
  cv_.notify_one();
}

void EventRecorder::run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    json ev = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    const std::string ns = ev["metadata"]["namespace"];
    auto res = api_.request("POST", "/api/v1/namespaces/" + ns + "/events", ev.dump(), std::chrono::seconds(5));
    const bool ok = res && (res->status == 201 || res->status == 200);
    metrics_.add("colo_kube_events_posted_total", {{"result", ok ? "ok" : "error"}});
    if (!ok) {
      spdlog::warn("kube: posting event {} on pod {}/{}: {}", ev["reason"].get<std::string>(), ns,
                   ev["involvedObject"]["name"].get<std::string>(), res ? "HTTP " + std::to_string(res->status) : res.error().message);
    }
    lock.lock();
  }
}

}  // namespace colo::node::kube
