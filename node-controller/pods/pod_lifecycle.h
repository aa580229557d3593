// Turns colo on and off for the pods the registry holds, and joins what the Kubernetes API says
// with what CNI said. The one owner of pod state: every change runs on its PodOwner thread (CNI
// verbs, watch events, the spool, restore, the sweep), so a pod is never activated by one while
// another releases it, and no lock is held while anything waits.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "metrics.h"
#include "pods/pod_hooks.h"
#include "pods/pod_meta.h"
#include "pods/pod_owner.h"
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

  ~PodLifecycle();
  // Runs `fn` as a command on the owner thread if it can start by `deadline`; false: not applied.
  bool run(PodOwner::Clock::time_point deadline, const std::function<void()>& fn) { return owner_.run(deadline, fn); }
  // Retries failed releases every `period` on the owner thread.
  void startSweep(std::chrono::milliseconds period);
  void stop() { owner_.stop(); }
  void setEventSink(PodEventSink sink) { events_ = std::move(sink); }
  // Reported with every activation while the datapath is off (empty: nothing to say).
  void setDatapathNote(std::function<std::string()> note) { datapathNote_ = std::move(note); }

  // On the owner thread (inside run()). activate() applies colo (failOpen: optional parts may be
  // skipped, with warnings); deactivate() undoes it but keeps the pod held.
  Status activate(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings);
  void deactivate(Pod& pod);
  // Undoes what colo made and forgets the pod. When undoing fails, the pod is kept (persisted,
  // releasePending), counted by cause, and retried by the sweep and the next GC: returns
  // {pending=true}. Fails ("unavailable") only when the outcome could not be persisted.
  struct Released {
    bool pending = false;
  };
  Expected<Released> release(const Pod& pod, const std::string& cause);
  // CHECK: what activate made is still there (endpoint, colo.sock, hugepages, datapath entries).
  Status verify(const Pod& pod, int netnsFd) { return hooks_.verify(pod, netnsFd); }
  // Retries every pending release and undo; returns how many are still pending.
  std::size_t retryPending();
  void updateGauges();
  // Opt-in as decided for this pod; an unreadable colo.dev/enabled value is logged and told as an Event.
  bool optedIn(const Pod& pod);

  // From any thread; each is one command on the owner thread.
  // The API's view of one pod (ADDED or MODIFIED): opt-in and hugepages follow its annotations.
  PodChange applyMeta(const PodMeta& meta);
  // The pod is gone from the API: release it even if its CNI DEL never came.
  void apiDeleted(const std::string& uid);
  // After a full list: pods held under a Kubernetes UID that the API no longer has, and that were
  // added before the list began, are released. `unidentified`: "ns/name" of listed objects without
  // a uid, whose pods are never released on this list's word. Returns how many were released.
  std::size_t syncAll(const std::vector<PodMeta>& all, std::int64_t listStartUnixMs, const std::set<std::string>& unidentified = {});

  static void merge(Pod& pod, const PodMeta& meta);

 private:
  void event(const Pod& pod, const std::string& type, const std::string& reason, const std::string& message);
  PodChange applyMetaNow(const PodMeta& meta);
  Registry& registry_;
  PodHooks& hooks_;
  Metrics& metrics_;
  PodEventSink events_;
  std::function<std::string()> datapathNote_;
  PodOwner owner_;  // last: its thread stops first
};

}  // namespace colo::node
