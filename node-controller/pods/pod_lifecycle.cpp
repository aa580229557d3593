#include "pods/pod_lifecycle.h"

#include <spdlog/spdlog.h>

#include <set>

#include "endpoints/endpoint_manager.h"

namespace colo::node {

namespace {
std::string who(const Pod& p) { return p.podNamespace + "/" + p.name + " (" + p.key + ")"; }
}  // namespace

PodLifecycle::PodLifecycle(Registry& registry, PodHooks& hooks, Metrics& metrics) : registry_(registry), hooks_(hooks), metrics_(metrics) {
  metrics_.describe("colo_pods", "gauge", "Pods colo is on for (endpoint, hugepages, datapath).");
  metrics_.describe("colo_pods_dormant", "gauge", "Pods held without colo (not opted in), ready to be turned on.");
  metrics_.describe("colo_pod_transitions_total", "counter", "Pods turned on or off on a running pod, or released, by cause.");
  updateGauges();
}

void PodLifecycle::event(const Pod& pod, const std::string& type, const std::string& reason, const std::string& message) {
  if (events_) events_(pod, type, reason, message);
}

void PodLifecycle::updateGauges() {
  const auto active = registry_.activeCount();
  metrics_.set("colo_pods", {}, static_cast<double>(active));
  metrics_.set("colo_pods_dormant", {}, static_cast<double>(registry_.size() - active));
}

Status PodLifecycle::activate(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings) {
  if (auto s = hooks_.attach(pod, netnsFd, failOpen, warnings); !s) return s;
  pod.active = true;
  pod.optInSource = pod.annotations.is_object() && pod.annotations.contains("colo.dev/enabled") ? "annotation" : "enableAll";
  for (const auto& w : warnings) {
    event(pod, "Warning", w.find("hugepages") != std::string::npos ? "HugepagesRefused" : "ColoDegraded", w);
  }
  if (datapathNote_) {
    if (auto note = datapathNote_(); !note.empty()) event(pod, "Warning", "DatapathOff", note);
  }
  return {};
}

void PodLifecycle::deactivate(Pod& pod) {
  if (pod.active) hooks_.detach(pod);
  pod.active = false;
  pod.optInSource.clear();
  pod.endpointDir.clear();
  pod.hugepageBytes = 0;
}

void PodLifecycle::release(const Pod& pod) {
  if (pod.active) hooks_.detach(pod);
  registry_.remove(pod.key);
}

void PodLifecycle::merge(Pod& pod, const PodMeta& meta) {
  if (!meta.podNamespace.empty()) pod.podNamespace = meta.podNamespace;
  if (!meta.name.empty()) pod.name = meta.name;
  pod.annotations = meta.annotations.is_object() ? meta.annotations : nlohmann::json::object();
  pod.labels = meta.labels;
  pod.serviceAccount = meta.serviceAccount;
  pod.phase = meta.phase;
  if (!meta.ips.empty() && pod.ips.empty()) pod.ips = meta.ips;  // CNI's prefixes are more precise
}

const char* toString(PodChange c) {
  switch (c) {
    case PodChange::NotHeld: return "not_held";
    case PodChange::Unchanged: return "unchanged";
    case PodChange::On: return "on";
    case PodChange::Off: return "off";
    case PodChange::Updated: return "updated";
  }
  return "?";
}

PodChange PodLifecycle::applyMeta(const PodMeta& meta) {
  std::lock_guard lock(mu_);
  auto held = registry_.get(meta.uid);
  if (!held) return PodChange::NotHeld;
  Pod pod = *held;
  const std::string oldHugepages = annotation(pod.annotations, kHugepagesAnnotation);
  merge(pod, meta);
  const bool want = wantsColo(pod);
  const bool hugepagesChanged = annotation(pod.annotations, kHugepagesAnnotation) != oldHugepages;

  if (pod.active && (!want || hugepagesChanged)) {
    deactivate(pod);
    if (!want) {
      spdlog::info("pod {}: colo.dev/enabled is no longer \"true\"; colo turned off (the pod keeps running)", who(pod));
      metrics_.add("colo_pod_transitions_total", {{"to", "off"}, {"cause", "annotation"}});
      event(pod, "Normal", "ColoDisabled", "colo turned off for this pod: its endpoint, hugepages and splice are gone");
    }
  }
  if (!pod.active && want) {
    auto fd = registry_.netnsOf(pod.key);
    std::vector<std::string> warnings;
    Status s = fd ? activate(pod, fd->get(), true, warnings) : Status(fd.error());
    if (!s) {
      spdlog::error("pod {}: cannot turn colo on: {}", who(pod), s.error().message);
      event(pod, "Warning", "ColoFailed", "colo could not be turned on: " + s.error().message);
    } else if (hugepagesChanged && held->active) {
      spdlog::info("pod {}: {} changed to '{}'; endpoint and hugepages set up again", who(pod), kHugepagesAnnotation,
                   annotation(pod.annotations, kHugepagesAnnotation));
      metrics_.add("colo_pod_transitions_total", {{"to", "on"}, {"cause", "hugepages"}});
    } else {
      spdlog::info("pod {}: colo.dev/enabled is \"true\"; colo turned on (endpoint {})", who(pod), pod.endpointDir);
      metrics_.add("colo_pod_transitions_total", {{"to", "on"}, {"cause", "annotation"}});
      event(pod, "Normal", "ColoEnabled", "colo turned on for this pod: endpoint " + pod.endpointDir);
    }
  }
  const bool changed = toJson(pod) != toJson(*held);
  if (changed) {
    if (auto s = registry_.update(pod); !s) spdlog::error("pod {}: {}", who(pod), s.error().message);
  }
  updateGauges();
  if (pod.active != held->active) return pod.active ? PodChange::On : PodChange::Off;
  return changed ? PodChange::Updated : PodChange::Unchanged;
}

void PodLifecycle::apiDeleted(const std::string& uid) {
  std::lock_guard lock(mu_);
  auto held = registry_.get(uid);
  if (!held) return;
  spdlog::info("pod {}: deleted in the API; released (its CNI DEL may come later and find nothing to undo)", who(*held));
  release(*held);
  metrics_.add("colo_pod_transitions_total", {{"to", "released"}, {"cause", "api_deleted"}});
  updateGauges();
}

std::size_t PodLifecycle::syncAll(const std::vector<PodMeta>& all, std::int64_t listStartUnixMs) {
  std::set<std::string> known;
  for (const auto& m : all) known.insert(m.uid);
  std::size_t released = 0;
  {
    std::lock_guard lock(mu_);
    for (const auto& pod : registry_.list()) {
      // Pods from runtimes without a Kubernetes UID (podman) and pods added while the list ran
      // are none of the API's business.
      if (pod.uid.empty() || known.count(pod.uid) || pod.addedUnixMs >= listStartUnixMs) continue;
      spdlog::info("pod {}: not in the API any more; released", who(pod));
      release(pod);
      metrics_.add("colo_pod_transitions_total", {{"to", "released"}, {"cause", "api_missing"}});
      ++released;
    }
  }
  for (const auto& m : all) applyMeta(m);
  std::lock_guard lock(mu_);
  updateGauges();
  return released;
}

}  // namespace colo::node
