// Turns colo on and off for the pods the registry holds, and joins what the Kubernetes API says
// with what CNI said. One mutex orders the CNI verbs and the API's updates, so a pod is never
// activated by one while the other releases it.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "metrics.h"
#include "pods/pod_hooks.h"
#include "pods/pod_meta.h"
#include "pods/registry.h"

namespace colo::node {

// Something a user must see on the pod (kubectl describe): type is "Normal" or "Warning".
using PodEventSink = std::function<void(const Pod&, const std::string& type, const std::string& reason, const std::string& message)>;

// What one API update did to a pod held here.
enum class PodChange { NotHeld, Unchanged, On, Off, Updated };
const char* toString(PodChange c);

class PodLifecycle {
 public:
  PodLifecycle(Registry& registry, PodHooks& hooks, Metrics& metrics);

  std::mutex& mutex() { return mu_; }
  void setEventSink(PodEventSink sink) { events_ = std::move(sink); }
  // Reported with every activation while the datapath is off (empty: nothing to say).
  void setDatapathNote(std::function<std::string()> note) { datapathNote_ = std::move(note); }

  // The caller holds mutex(). activate() applies colo (failOpen: optional parts may be skipped,
  // with warnings); deactivate() undoes it but keeps the pod held; release() forgets the pod.
  Status activate(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings);
  void deactivate(Pod& pod);
  void release(const Pod& pod);
  void updateGauges();

  // The API's view of one pod (ADDED or MODIFIED): opt-in and hugepages follow its annotations.
  // Takes the mutex.
  PodChange applyMeta(const PodMeta& meta);
  // The pod is gone from the API: release it even if its CNI DEL never came. Takes the mutex.
  void apiDeleted(const std::string& uid);
  // After a full list: pods held under a Kubernetes UID that the API no longer has, and that were
  // added before the list began, are released. Takes the mutex. Returns how many were released.
  std::size_t syncAll(const std::vector<PodMeta>& all, std::int64_t listStartUnixMs);

  static void merge(Pod& pod, const PodMeta& meta);

 private:
  void event(const Pod& pod, const std::string& type, const std::string& reason, const std::string& message);
  Registry& registry_;
  PodHooks& hooks_;
  Metrics& metrics_;
  std::mutex mu_;
  PodEventSink events_;
  std::function<std::string()> datapathNote_;
};

}  // namespace colo::node
