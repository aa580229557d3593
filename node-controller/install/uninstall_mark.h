// How `helm uninstall` tells each colo-node that colo is leaving, while the API still answers.
// Helm deletes the DaemonSet, ServiceAccount and RBAC in one call, so a colo-node asking at
// SIGTERM whether its DaemonSet is gone may get 401/403 and must keep everything. Instead a
// pre-delete hook (`colo-node mark-uninstall`) annotates every colo pod with
// colo.dev/uninstall=true and waits until each colo-node, which sees its own pod through the
// watch it already has, acknowledges with an Event on that pod. At SIGTERM the decision is then
// local: marked means uninstall, whatever the API says by then. A rollout marks nothing.
#pragma once

#include <chrono>
#include <string>

#include "kube/api_client.h"

namespace colo::node {

inline constexpr const char* kUninstallAnnotation = "colo.dev/uninstall";
inline constexpr const char* kUninstallAckReason = "ColoUninstallAcknowledged";

struct MarkOptions {
  std::string ns;        // the release namespace
  std::string selector;  // label selector of the DaemonSet's pods
  std::chrono::seconds timeout{60};
};

// The hook. 0 when every pod acknowledged (or there were none); 0 with a warning per pod that
// did not in time (its node falls back to asking for the DaemonSet); 1 when the API refused.
int markUninstall(kube::ApiClient& api, const MarkOptions& options);

}  // namespace colo::node
