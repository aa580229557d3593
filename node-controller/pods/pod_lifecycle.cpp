#include "pods/pod_lifecycle.h"
#include "colo/common/protocol.h"

#include <spdlog/spdlog.h>

#include <set>

#include "colo/common/opt_in.h"
#include "endpoints/endpoint_manager.h"

namespace colo::node {

namespace {
constexpr const char* kSpliceAnnotationKey = "colo.dev/splice";  // datapath/datapath.h's kSpliceAnnotation
std::string who(const Pod& p) { return p.podNamespace + "/" + p.name + " (" + p.key + ")"; }
// Watch events and lists carry no deadline of their own: long enough that only a stuck owner misses it.
PodOwner::Clock::time_point apiDeadline() { return PodOwner::Clock::now() + std::chrono::seconds(60); }
}  // namespace

PodLifecycle::~PodLifecycle() { owner_.stop(); }

void PodLifecycle::startSweep(std::chrono::milliseconds period) {
  owner_.every(period, [this] { (void)retryPending(); });
}

bool PodLifecycle::optedIn(const Pod& pod) {
  const auto d = optin::decide(pod.annotations, pod.enableAll);
  if (!d.badValue.empty()) {
    spdlog::warn("pod {}: annotation {} value '{}' is not understood (true/false, 1/0, t/f); colo stays off", who(pod),
                 optin::kEnabledAnnotation, d.badValue);
    metrics_.add("colo_opt_in_not_understood_total");
    event(pod, "Warning", "ColoOptInNotUnderstood",
          std::string("annotation ") + optin::kEnabledAnnotation + " value '" + d.badValue + "' is not understood (use \"true\" or \"false\"); colo stays off");
  }
  return d.on();
}

PodLifecycle::PodLifecycle(Registry& registry, PodHooks& hooks, Metrics& metrics) : registry_(registry), hooks_(hooks), metrics_(metrics) {
  metrics_.describe("colo_pods", "gauge", "Pods colo is on for (endpoint, hugepages, datapath).");
  metrics_.describe("colo_pods_dormant", "gauge", "Pods held without colo (not opted in), ready to be turned on.");
  metrics_.describe("colo_pod_transitions_total", "counter", "Pods turned on or off on a running pod, or released, by cause.");
  metrics_.describe("colo_pod_release_failures_total", "counter", "Releases (DEL, GC, API, sweep) whose undoing failed; the pod is kept and retried.");
  metrics_.describe("colo_pod_releases_pending", "gauge", "Pods released but not yet undone (retried by GC and the sweep).");
  metrics_.describe("colo_opt_in_not_understood_total", "counter", "colo.dev/enabled values that are not a boolean (the pod stays off).");
  metrics_.add("colo_pod_release_failures_total", {}, 0);
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
  pod.optInSource = optin::decide(pod.annotations, pod.enableAll).source;
  for (const auto& w : warnings) {
    event(pod, "Warning", w.find("hugepages") != std::string::npos ? "HugepagesRefused" : "ColoDegraded", w);
  }
  if (datapathNote_) {
    if (auto note = datapathNote_(); !note.empty()) event(pod, "Warning", "DatapathOff", note);
  }
  return {};
}

void PodLifecycle::deactivate(Pod& pod) {
  if (pod.active || pod.undoPending) {
    auto s = hooks_.detach(pod);
    pod.undoPending = !s;
    if (!s) {
      spdlog::error("pod {}: turning colo off left something behind: {}; retried by the sweep", who(pod), s.error().message);
      metrics_.add("colo_pod_release_failures_total", {{"cause", "off"}});
    }
  }
  pod.active = false;
  pod.optInSource.clear();
  if (!pod.undoPending) {
    pod.endpointDir.clear();
    pod.hugepageBytes = 0;
  }
}

Expected<PodLifecycle::Released> PodLifecycle::release(const Pod& pod, const std::string& cause) {
  if (pod.active || pod.undoPending) {
    if (auto s = hooks_.detach(pod); !s) {
      Pod kept = pod;
      kept.active = false;
      kept.undoPending = kept.releasePending = true;
      metrics_.add("colo_pod_release_failures_total", {{"cause", cause}});
      spdlog::error("pod {}: release ({}) failed: {}; kept, and retried by the next GC and the sweep", who(pod), cause, s.error().message);
      if (auto u = registry_.update(kept); !u) return proto::error(proto::ErrorCode::Unavailable, "pod " + pod.key + ": release failed (" + s.error().message + ") and could not be persisted: " + u.error().message, u.error().errnum);
      updateGauges();
      return Released{true};
    }
  }
  auto removed = registry_.remove(pod.key);
  updateGauges();
  if (!removed) {
    spdlog::error("pod {}: released, but {}", who(pod), removed.error().message);
    return removed.error();
  }
  return Released{false};
}

std::size_t PodLifecycle::retryPending() {
  std::size_t still = 0;
  for (auto pod : registry_.list()) {
    if (pod.releasePending) {
      auto r = release(pod, "retry");
      if (!r || r->pending) ++still;
      else spdlog::info("pod {}: pending release done", who(pod));
    } else if (pod.undoPending) {
      deactivate(pod);
      if (pod.undoPending) ++still;
      (void)registry_.update(pod);
    }
  }
  metrics_.set("colo_pod_releases_pending", {}, static_cast<double>(still));
  return still;
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
  PodChange out = PodChange::Unchanged;
  if (!run(apiDeadline(), [&] { out = applyMetaNow(meta); })) spdlog::error("pod {}: the API's update was not applied (owner busy)", meta.uid);
  return out;
}

PodChange PodLifecycle::applyMetaNow(const PodMeta& meta) {
  auto held = registry_.get(meta.uid);
  if (!held || held->releasePending) return PodChange::NotHeld;
  Pod pod = *held;
  const std::string oldHugepages = annotation(pod.annotations, kHugepagesAnnotation);
  const nlohmann::json oldSplice = pod.annotations.is_object() ? pod.annotations.value(kSpliceAnnotationKey, nlohmann::json()) : nlohmann::json();
  merge(pod, meta);
  const bool want = optedIn(pod);
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
  // Declared or withdrawn colo.dev/splice on a pod that stays on: only its datapath entry changes.
  if (pod.active && held->active && !hugepagesChanged &&
      oldSplice != (pod.annotations.is_object() ? pod.annotations.value(kSpliceAnnotationKey, nlohmann::json()) : nlohmann::json())) {
    hooks_.annotationsChanged(pod);
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
  run(apiDeadline(), [&] {
    auto held = registry_.get(uid);
    if (!held) return;
    spdlog::info("pod {}: deleted in the API; released (its CNI DEL may come later and find nothing to undo)", who(*held));
    (void)release(*held, "api_deleted");
    metrics_.add("colo_pod_transitions_total", {{"to", "released"}, {"cause", "api_deleted"}});
  });
}

std::size_t PodLifecycle::syncAll(const std::vector<PodMeta>& all, std::int64_t listStartUnixMs, const std::set<std::string>& unidentified) {
  std::set<std::string> known;
  for (const auto& m : all) known.insert(m.uid);
  std::size_t released = 0;
  run(apiDeadline(), [&] {
    for (const auto& pod : registry_.list()) {
      // Pods from runtimes without a Kubernetes UID (podman), pods added while the list ran, and
      // pods the list may have named without a uid are none of this list's business.
      if (pod.uid.empty() || known.count(pod.uid) || pod.addedUnixMs >= listStartUnixMs) continue;
      if (unidentified.count(pod.podNamespace + "/" + pod.name) || unidentified.count("*")) {
        spdlog::warn("pod {}: not found by uid in the API's list, which had objects without a uid; kept", who(pod));
        continue;
      }
      spdlog::info("pod {}: not in the API any more; released", who(pod));
      (void)release(pod, "api_missing");
      metrics_.add("colo_pod_transitions_total", {{"to", "released"}, {"cause", "api_missing"}});
      ++released;
    }
    for (const auto& m : all) applyMetaNow(m);
    updateGauges();
  });
  return released;
}

}  // namespace colo::node
