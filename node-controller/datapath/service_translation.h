// colo's Service translation, owned by colo-node: loads bpf/colo_svc.bpf.c (cgroup connect4/6 and
// getpeername4/6), attaches it through pinned links at the same cgroup as the splice, and keeps
// its maps in step: the callers (opted-in pods of this node, by netns cookie, from the pod
// lifecycle) and the frontends (Services asking for node-local traffic, with their ready backends
// that are opted-in pods of this node, from the Service cache). A sync thread recomputes the
// frontends whenever either side changes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "colo/common/error.h"
#include "datapath/service_table.h"
#include "kube/service_cache.h"
#include "metrics.h"
#include "pods/pod_hooks.h"

namespace colo::node {

struct ServiceTranslationConfig {
  std::string mode = "auto";  // auto: as on unless the datapath is off; on: load when the Kubernetes API is watched; off
  std::string datapathMode;  // the datapath's (auto, on, off)
  std::string cgroupPath;   // empty: the detected cgroup v2 root
  std::string pinDir = "/sys/fs/bpf/colo";
  std::string node;         // EndpointSlice endpoints naming another node are never taken
};

struct ServiceTranslationStats {
  std::uint64_t translated = 0, notCaller = 0, peernameRestored = 0;
};

class ServiceTranslation final : public PodHooks {
 public:
  ServiceTranslation(ServiceTranslationConfig config, Metrics& metrics);
  ~ServiceTranslation() override;

  // Loads and attaches, then follows `cache` (may be null: nothing is translated). Never fails
  // the agent: on a problem it stays off and status() says why.
  void start(kube::ServiceCache* cache);
  void stop();
  bool active() const { return active_; }
  nlohmann::json status() const;
  ServiceTranslationStats stats() const;  // also refreshes the metrics

  // PodHooks: an opted-in pod becomes a caller and may be a backend.
  Status attach(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings) override;
  Status detach(const Pod& pod) override;
  // Makes the callers exactly these pods (at start, after a restart).
  void sync(const std::vector<Pod>& pods);

 private:
  struct Bpf;
  Status load();
  void run();
  void markDirty();
  void applyOnce();
  Status setCaller(std::uint64_t cookie, bool present);

  ServiceTranslationConfig config_;
  Metrics& metrics_;
  std::unique_ptr<Bpf> bpf_;
  const kube::ServiceCache* cache_ = nullptr;
  std::atomic<bool> active_{false};
  std::string state_ = "off", reason_ = "not started", cgroup_;
  std::uint64_t hostCookie_ = 0;

  mutable std::mutex mu_;  // the fields below
  std::condition_variable cv_;
  std::map<std::string, std::pair<std::uint64_t, std::vector<std::string>>> pods_;  // key -> netns cookie, IPs
  std::multiset<std::string> localIps_;
  std::uint64_t dirtyGen_ = 0, appliedGen_ = 0, urgentGen_ = 0;  // urgent: applied without the burst wait
  bool stopping_ = false;
  std::thread thread_;

  ServiceTable table_;  // sync thread only
  mutable std::mutex statusMu_;
  std::map<std::string, std::size_t> translated_;  // namespace/name -> local backends, as applied
};

}  // namespace colo::node
