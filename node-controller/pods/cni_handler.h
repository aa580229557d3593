// colo-node's answers to colo-cni: cni.add, cni.del, cni.check, cni.status, cni.gc.
// Pure logic over the registry; the socket server hands it decoded messages.
#pragma once

#include <nlohmann/json.hpp>

#include "colo/common/netns.h"
#include "colo/common/wire.h"
#include "metrics.h"
#include "pods/pod_hooks.h"
#include "pods/registry.h"

namespace colo::node {

class CniHandler {
 public:
  // `hostNetns` is the agent's own netns: a pod in it is a hostNetwork pod and is refused.
  CniHandler(Registry& registry, PodHooks& hooks, Metrics& metrics, netns::Identity hostNetns);

  // Returns the reply for one request; never throws.
  nlohmann::json handle(wire::Message& request);

  static bool handles(const std::string& op) { return op.rfind("cni.", 0) == 0; }

 private:
  using json = nlohmann::json;
  json add(const json& req, wire::Message& msg);
  json del(const json& req);
  json check(const json& req, wire::Message& msg);
  json status(const json& req);
  json gc(const json& req);
  void updateGauges();

  void release(const Pod& pod);
  Registry& registry_;
  PodHooks& hooks_;
  Metrics& metrics_;
  netns::Identity hostNetns_;
};

}  // namespace colo::node
