// How `helm uninstall` tells each colo-node that colo is leaving, while the API still answers.
// Helm deletes the DaemonSet, ServiceAccount and RBAC in one call, so a colo-node asking at
// SIGTERM whether its DaemonSet is gone may get 401/403 and must keep everything. Instead a
// pre-delete hook (`colo-node mark-uninstall`) annotates every colo pod with
// colo.dev/uninstall=true and waits until each colo-node, which sees its own pod through the
// watch it already has, acknowledges with an Event on that pod. A rollout marks nothing.
// The mark alone is not the decision (a helm uninstall interrupted after its hook leaves it on
// pods whose DaemonSet stays): at SIGTERM a marked colo-node leaves only when its DaemonSet is
// gone, being deleted or replaced, or when it cannot tell (the RBAC going with the DaemonSet)
// and the mark is recent. A marked pod whose DaemonSet is there and not being deleted keeps colo.
#pragma once

#include <chrono>
#include <string>

#include "kube/api_client.h"

namespace colo::node {

inline constexpr const char* kUninstallAnnotation = "colo.dev/uninstall";
inline constexpr const char* kUninstallAckReason = "ColoUninstallAcknowledged";
// Beside the mark: when the hook set it (Unix seconds) and the UID of the DaemonSet it was for.
inline constexpr const char* kUninstallAtAnnotation = "colo.dev/uninstall-at";
inline constexpr const char* kUninstallDaemonSetAnnotation = "colo.dev/uninstall-daemonset-uid";
// How long a mark counts when the API cannot confirm the DaemonSet's deletion: Helm deletes the
// release's objects right after its hooks (which wait at most --timeout, 5 min by default).
inline constexpr std::chrono::minutes kUninstallMarkTtl{15};

struct MarkOptions {
  std::string ns;        // the release namespace
  std::string selector;  // label selector of the DaemonSet's pods
  std::chrono::seconds timeout{60};
};

// The hook. 0 when every pod acknowledged (or there were none); 0 with a warning per pod that
// did not in time (its node falls back to asking for the DaemonSet); 1 when the API refused.
int markUninstall(kube::ApiClient& api, const MarkOptions& options);

}  // namespace colo::node
