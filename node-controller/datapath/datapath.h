// colo's transparent splice, owned by colo-node: loads the BPF programs, pins maps and links under
// /sys/fs/bpf/colo, attaches sock_ops at the cgroup v2 root that pods live under, keeps the map of
// opted-in pod addresses in step with the registry, and turns itself off (saying why) when the
// kernel fails the self-test.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "colo/common/error.h"
#include "datapath/bpf_skeleton.h"
#include "datapath/guard.h"
#include "datapath/pin_owner.h"
#include "datapath/selftest.h"
#include "metrics.h"
#include "pods/pod_hooks.h"
#include "pods/pod_lifecycle.h"

namespace colo::node {

struct DatapathConfig {
  std::string mode = "auto";  // auto: on when probes and self-test pass; on: skip the self-test's veto; off
  std::string cgroupPath;     // empty: detect the cgroup v2 root
  std::string pinDir = "/sys/fs/bpf/colo";
  std::string node;           // the pin dir's owner (see pin_owner.h); empty: not checked
  std::string legacyPinDir;   // 0.1.0's shared pin dir, taken over (renamed) when pinDir is new
};

struct DatapathStats {
  std::uint64_t socketsInserted = 0, insertFailed = 0, skippedNotPod = 0, msgsRedirected = 0, bytesRedirected = 0, fallbacks = 0,
                skippedNotSplice = 0;
};

// The annotation by which a pod declares that its TCP readers are event-driven (non-blocking,
// poll/epoll), so that the splice is safe for it on kernels whose blocking reads it breaks.
inline constexpr const char* kSpliceAnnotation = "colo.dev/splice";

// Why one pod's connections are or are not spliced (/debug/pods, colo_datapath_pods{state}).
struct PodSplice {
  std::string state;   // spliced, not_declared, unsafe, off
  std::string reason;
};

class Datapath final : public PodHooks {
 public:
  Datapath(DatapathConfig config, Metrics& metrics);
  ~Datapath() override;

  // Never fails the agent: on any problem the datapath stays off and status() says why.
  void start();
  // Runs the self-test alone (colo-node check-kernel): loads, tests, and leaves nothing behind
  // but what start() would have. Never splices anything outside the test's own namespace.
  SelfTestResult checkKernel();
  bool active() const { return active_; }
  // Per-pod mode: the kernel failed only checks that colo.dev/splice covers; only pods that
  // declared it are spliced, and the guard watches them.
  bool perPod() const { return splice_ == Splice::PerPod; }
  PodSplice podSplice(const Pod& pod) const;
  // Events about a pod's splice (SpliceUnsafe, ...), the way the pod lifecycle tells them.
  void setEventSink(PodEventSink sink);
  // Stops the guard (its programs detach, its thread ends): at agent stop, before the API client
  // its events go to. UNSAFE marks already made stay in the pinned pod map.
  void stopGuard();
  nlohmann::json status() const;
  DatapathStats stats() const;

  // PodHooks: the pod's addresses enter / leave the pod map.
  Status attach(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings) override;
  Status detach(const Pod& pod) override;
  // The pod's addresses are in the pod map (when the datapath is on).
  Status verify(const Pod& pod, int netnsFd) override;
  // The pod's annotations changed while it was on (colo.dev/splice declared or withdrawn).
  void annotationsChanged(const Pod& pod) override;
  // Makes the pod map hold exactly these pods' addresses (at start, after a restart).
  void sync(const std::vector<Pod>& pods);
  bool podAddressesPresent(const Pod& pod) const;

  // Removes everything colo pinned and attached (colo-node uninstall).
  static Status uninstall(const std::string& pinDir);
  // Unpins the sock_ops and guard links in pinDir (they detach; the maps stay): datapath off,
  // check-kernel, uninstall. Returns how many went.
  static int detachPinned(const std::string& pinDir);
  static Expected<std::string> detectCgroupRoot();

 private:
  enum class Splice { Off, Full, PerPod };
  struct PodRecord {
    std::string key, podNamespace, name, uid;
    std::vector<std::string> ips;
    bool declared = false;
    std::string badValue;  // a colo.dev/splice value that is not a boolean
    bool unsafe = false;   // the guard saw a blocking read (per-pod mode: withdrawn)
    std::string unsafeWhy;
  };
  Status load();
  void loadGuard();
  void detachEarlierRun();
  void syncMap(const std::vector<Pod>& pods);  // mu_ held
  void tellGuardEvent(const GuardEvent& e, bool early);
  void adoptLegacyPins();
  Status setAddress(const std::string& cidr, bool present, std::uint32_t flags = COLO_POD_SPLICE);
  std::uint32_t flagsFor(const PodRecord& r) const;
  std::uint32_t keptGuardBits(std::uint32_t flags) const;
  PodRecord recordFor(const Pod& pod) const;
  PodSplice spliceOf(const PodRecord* r) const;  // mu_ held
  void tellSplice(const PodRecord& r, bool changed);
  void onGuardEvent(const GuardEvent& e);
  void publish();
  void publishPods() const;  // mu_ held
  SelfTestResult selfTest();

  DatapathConfig config_;
  Metrics& metrics_;
  std::unique_ptr<ColoBpf> bpf_;
  std::optional<PinOwner> pinOwner_;
  bool active_ = false;
  std::string state_ = "off", reason_ = "not started", cgroup_;
  SelfTestResult selftest_;
  Splice splice_ = Splice::Off;
  std::unique_ptr<Guard> guard_;
  std::string guardStatus_ = "not loaded";
  std::map<std::string, PodRecord> pods_;  // active pods by key
  bool synced_ = false;                     // sync() ran: pods_ holds the restored pods
  std::vector<GuardEvent> earlyGuardEvents_;  // read from the pinned ring before that (seen while down)
  PodEventSink events_;
  mutable std::mutex mu_;
};

}  // namespace colo::node
