// colo's transparent splice, owned by colo-node: loads the BPF programs, pins maps and links under
// /sys/fs/bpf/colo, attaches sock_ops at the cgroup v2 root that pods live under, keeps the map of
// opted-in pod addresses in step with the registry, and turns itself off (saying why) when the
// kernel fails the self-test.
#pragma once

#include <memory>
#include <optional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "colo/common/error.h"
#include "datapath/bpf_skeleton.h"
#include "datapath/pin_owner.h"
#include "datapath/selftest.h"
#include "metrics.h"
#include "pods/pod_hooks.h"

namespace colo::node {

struct DatapathConfig {
  std::string mode = "auto";  // auto: on when probes and self-test pass; on: skip the self-test's veto; off
  std::string cgroupPath;     // empty: detect the cgroup v2 root
  std::string pinDir = "/sys/fs/bpf/colo";
  std::string node;           // the pin dir's owner (see pin_owner.h); empty: not checked
  std::string legacyPinDir;   // 0.1.0's shared pin dir, taken over (renamed) when pinDir is new
};

struct DatapathStats {
  std::uint64_t socketsInserted = 0, insertFailed = 0, skippedNotPod = 0, msgsRedirected = 0, bytesRedirected = 0, fallbacks = 0;
};

class Datapath final : public PodHooks {
 public:
  Datapath(DatapathConfig config, Metrics& metrics);
  ~Datapath() override;

  // Never fails the agent: on any problem the datapath stays off and status() says why.
  void start();
  bool active() const { return active_; }
  nlohmann::json status() const;
  DatapathStats stats() const;

  // PodHooks: the pod's addresses enter / leave the pod map.
  Status attach(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings) override;
  Status detach(const Pod& pod) override;
  // The pod's addresses are in the pod map (when the datapath is on).
  Status verify(const Pod& pod, int netnsFd) override;
  // Makes the pod map hold exactly these pods' addresses (at start, after a restart).
  void sync(const std::vector<Pod>& pods);
  bool podAddressesPresent(const Pod& pod) const;

  // Removes everything colo pinned and attached (colo-node uninstall).
  static Status uninstall(const std::string& pinDir);
  static Expected<std::string> detectCgroupRoot();

 private:
  Status load();
  void adoptLegacyPins();
  Status setAddress(const std::string& cidr, bool present);
  void publish();

  DatapathConfig config_;
  Metrics& metrics_;
  std::unique_ptr<ColoBpf> bpf_;
  std::optional<PinOwner> pinOwner_;
  bool active_ = false;
  std::string state_ = "off", reason_ = "not started", cgroup_;
  SelfTestResult selftest_;
  mutable std::mutex mu_;
};

}  // namespace colo::node
