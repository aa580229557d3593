// What colo-node knows about one pod attachment, and its persisted JSON form.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "colo/common/netns.h"

namespace colo::node {

// One CNI attachment: a network's interface in a container (Multus gives a pod several).
struct AttachmentId {
  std::string network, containerId, ifname;
  bool operator==(const AttachmentId&) const = default;
};

struct Pod {
  std::string key;  // pod UID, or the container ID when the runtime passes none (podman)
  std::string podNamespace, name, uid, infraContainerId;
  std::string network, containerId, ifname;  // the first CNI attachment (shown, and kept for old state files)
  // Every attachment in this pod's netns; the endpoint is shared and goes with the last one.
  std::vector<AttachmentId> attachments;
  std::string netnsPath;
  netns::Identity netns;
  std::vector<std::string> ips;
  nlohmann::json annotations;  // object, or null when unknown; the API's copy wins over the runtime's
  bool enableAll = false;      // colo-cni's enableAll: on unless an annotation says otherwise
  bool active = true;          // colo applied (endpoint, hugepages, datapath); false: held dormant
  std::string optInSource;     // "annotation", "enableAll", "" when dormant
  std::string addedAt;         // RFC 3339
  std::int64_t addedUnixMs = 0;
  // From the Kubernetes API, when the agent watches it.
  nlohmann::json labels;  // object or null
  std::string serviceAccount, phase;
  std::uint64_t hugepageBytes = 0;  // size of the pod's hugetlbfs mount; 0: none
  std::string endpointDir;          // /run/colo/pods/<key>, empty when the pod has no endpoint
  // Released by DEL, GC or the API, but undoing it failed (a busy mount, a directory that would not
  // go): kept, and retried by the next GC and the agent's sweep until it is done.
  bool releasePending = false;
  // What attach made is (partly) still there after a failed detach: the sweep detaches again.
  bool undoPending = false;

  bool sameAttachment(const std::string& net, const std::string& cid, const std::string& ifn) const {
    const AttachmentId a{net, cid, ifn};
    for (const auto& b : attachments) {
      if (a == b) return true;
    }
    return attachments.empty() && network == net && containerId == cid && ifname == ifn;
  }
  // Drops one attachment; the first remaining one becomes the one shown. Returns how many remain.
  std::size_t dropAttachment(const AttachmentId& a);
};

// Whether colo should be on for the pod (common/opt_in.h decides, as colo-cni does).
bool wantsColo(const nlohmann::json& annotations, bool enableAll);
inline bool wantsColo(const Pod& p) { return wantsColo(p.annotations, p.enableAll); }
// The value of one annotation, or "" when absent or not a string.
std::string annotation(const nlohmann::json& annotations, const char* key);

nlohmann::json toJson(const Pod& p);
// Strict: a file that does not hold a pod (hand-edited, truncated) yields nullopt.
std::optional<Pod> podFromJson(const nlohmann::json& j);

std::string nowRfc3339();
std::int64_t nowUnixMs();

}  // namespace colo::node
