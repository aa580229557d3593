// What the Kubernetes API says about a pod, as far as colo cares. Parsed in kube/, applied in pods/.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace colo::node {

struct PodMeta {
  std::string uid, podNamespace, name, nodeName, serviceAccount, phase, resourceVersion;
  nlohmann::json annotations = nlohmann::json::object();
  nlohmann::json labels = nlohmann::json::object();
  std::vector<std::string> ips;
  bool terminating = false;  // deletionTimestamp set: still running its grace period
  bool hostNetwork = false;
};

}  // namespace colo::node
