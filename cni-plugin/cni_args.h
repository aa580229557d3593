// CNI_ARGS: "K=V;K=V", any order. Unknown keys are an error unless IgnoreUnknown is true.
#pragma once

#include <string>

#include "cni_error.h"
#include "colo/common/error.h"

namespace colo::cni {

struct PodArgs {
  std::string podNamespace;  // K8S_POD_NAMESPACE
  std::string podName;       // K8S_POD_NAME
  std::string podUid;        // K8S_POD_UID (validated; may be empty, e.g. podman)
  std::string infraContainerId;  // K8S_POD_INFRA_CONTAINER_ID
};

Expected<PodArgs, CniError> parseCniArgs(const std::string& raw);

}  // namespace colo::cni
