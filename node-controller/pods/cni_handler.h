// colo-node's answers to colo-cni: cni.add, cni.del, cni.check, cni.status, cni.gc.
// Pure logic over the registry; the socket server hands it decoded messages.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "colo/common/netns.h"
#include "colo/common/wire.h"
#include "metrics.h"
#include "pods/pod_lifecycle.h"
#include "pods/pod_meta.h"
#include "pods/registry.h"

namespace colo::node {

// How the handler learns what the runtime did not say (the Kubernetes mode fills these in).
struct CniOptions {
  // Keep pods that have not opted in (netns held, nothing applied), so that an annotation added
  // later can turn colo on without restarting the pod.
  bool holdDormant = false;
  // The API's view of a pod whose runtime passed no annotations; must return by the deadline.
  std::function<std::optional<PodMeta>(const std::string& ns, const std::string& name, const std::string& uid,
                                       std::chrono::steady_clock::time_point deadline)> lookup;
};

class CniHandler {
 public:
  // `hostNetns` is the agent's own netns: a pod in it is a hostNetwork pod and is refused.
  CniHandler(Registry& registry, PodLifecycle& lifecycle, Metrics& metrics, netns::Identity hostNetns, CniOptions options = {});

  // Returns the reply for one request; never throws.
  nlohmann::json handle(wire::Message& request);

  static bool handles(const std::string& op) { return op.rfind("cni.", 0) == 0; }

  // On the owner thread (inside lifecycle.run), before the CNI socket serves:
  // a pod from the state dir whose netns is still there, held again the way ADD holds a pod;
  void restore(Pod pod, UniqueFd netnsFd);
  // the ADDs and DELs colo-cni spooled while colo-node was unreachable, each attachment's last
  // record only, oldest first; a record is removed once applied. Returns how many were applied.
  std::size_t applySpool(const std::string& dir);

 private:
  using json = nlohmann::json;
  Pod parseAdd(const json& req);
  void lookupMeta(Pod& pod, const json& req, PodOwner::Clock::time_point deadline);
  json applyAdd(const json& req, Pod pod, UniqueFd netnsFd, bool failOpen);
  Status hold(Pod& pod, UniqueFd netnsFd, bool optedIn, bool failOpen, std::vector<std::string>& warnings);
  json del(const json& req);
  json check(const json& req, wire::Message& msg);
  json status(const json& req);
  json gc(const json& req);
  Registry& registry_;
  PodLifecycle& lifecycle_;
  Metrics& metrics_;
  netns::Identity hostNetns_;
  CniOptions options_;
};

}  // namespace colo::node
