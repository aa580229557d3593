// What a pod may ask of colo-node over its endpoint (@colo or colo.sock). The caller's identity
// is the pod that owns the accepting socket, never anything the client says.
#pragma once

#include <nlohmann/json.hpp>

#include "broker/broker.h"
#include "colo/common/netns.h"
#include "config.h"
#include "metrics.h"
#include "pods/registry.h"
#include "server/seqpacket_server.h"

namespace colo::node {

inline constexpr const char* kAgentCapabilities[] = {"hello", "listen", "dial", "channel"};

class PodApi {
 public:
  PodApi(const Config& config, Registry& registry, Metrics& metrics);
  Reply handle(wire::Message& msg, const ConnInfo& conn);
  void connectionClosed(const ConnInfo& conn) { broker_.connectionClosed(conn); }
  // Kubernetes mode: dial accepts service/... and pod/... names, resolved from this cache.
  void setServiceCache(const kube::ServiceCache* cache) { broker_.setServiceCache(cache, config_.nodeName); }
  // The filesystem socket can be reached by anything that sees the path; only a process inside
  // the pod's own network namespace is that pod.
  Status admit(const ConnInfo& conn) const;
  // The network namespace of the process behind a connection (SO_PEERPIDFD; see admit).
  static Expected<netns::Identity> peerNetns(const ConnInfo& conn);
  // The same namespace as a descriptor, not yet inspected (inspecting costs a thread).
  static Expected<UniqueFd> peerNetnsFd(const ConnInfo& conn);
  // PIDFD_GET_NET_NAMESPACE (linux/pidfd.h, 6.11): _IO(0xFF, 4). Older headers lack it; the
  // answer is checked to be a network namespace whatever it is.
  static constexpr unsigned long kPidfdGetNetNamespace = (0xFFUL << 8) | 4;
  Broker& broker() { return broker_; }
  // The pods server's caps (docs/protocol.md, "Limits"): a pod, however hostile, only exhausts its own share.
  static ServerLimits serverLimits();

 private:
  nlohmann::json hello(const nlohmann::json& req, const Pod& pod, const ConnInfo& conn) const;
  const Config& config_;
  Registry& registry_;
  Metrics& metrics_;
  Broker broker_;
};

}  // namespace colo::node
