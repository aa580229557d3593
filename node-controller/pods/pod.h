// What colo-node knows about one pod attachment, and its persisted JSON form.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "colo/common/netns.h"

namespace colo::node {

struct Pod {
  std::string key;  // pod UID, or the container ID when the runtime passes none (podman)
  std::string podNamespace, name, uid, infraContainerId;
  std::string network, containerId, ifname;  // the CNI attachment
  std::string netnsPath;
  netns::Identity netns;
  std::vector<std::string> ips;
  nlohmann::json annotations;  // object, or null when the runtime passed none
  std::string optInSource;     // "annotation", "enableAll"
  std::string addedAt;         // RFC 3339
  std::uint64_t hugepageBytes = 0;  // size of the pod's hugetlbfs mount; 0: none
  std::string endpointDir;          // /run/colo/pods/<key>, empty when the pod has no endpoint

  bool sameAttachment(const std::string& net, const std::string& cid, const std::string& ifn) const {
    return network == net && containerId == cid && ifname == ifn;
  }
};

nlohmann::json toJson(const Pod& p);
// Strict: a file that does not hold a pod (hand-edited, truncated) yields nullopt.
std::optional<Pod> podFromJson(const nlohmann::json& j);

std::string nowRfc3339();

}  // namespace colo::node
