// listen and dial between pods, through the node. A dial to a name registered on this node gets a
// connected pair of Unix stream sockets, one end handed to each side with the other's identity.
// A dial to host:port gets a TCP socket connected from inside the caller's own network namespace,
// so its source address and NetworkPolicy are what they would have been.
#pragma once

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "metrics.h"
#include "pods/registry.h"
#include "server/seqpacket_server.h"

namespace colo::node {

inline constexpr const char* kAllowFromAnnotation = "colo.dev/allow-from";

class Broker {
 public:
  Broker(Registry& registry, Metrics& metrics);

  Reply listen(const nlohmann::json& req, const Pod& pod, const ConnInfo& conn);
  Reply dial(const nlohmann::json& req, const Pod& pod, const ConnInfo& conn);
  // Memory for a shared-memory channel, laid out, with two eventfds (see colo/channel_layout.h):
  // from the caller's hugepages when it has room there, else ordinary memory (memfd).
  Reply channel(const nlohmann::json& req, const Pod& pod);
  // A connection went away: the names it listened on go with it.
  void connectionClosed(const ConnInfo& conn);

  static nlohmann::json identityOf(const Pod& pod);
  // Namespace-qualified name of a registration by `pod`: "<namespace>/<name>".
  static std::string qualify(const Pod& pod, const std::string& name);
  // Default: same namespace only. The listener's pod may admit more with colo.dev/allow-from:
  // "ns1,ns2", "*", or "ns/serviceaccount" (service accounts known in Kubernetes mode).
  static bool allowed(const Pod& caller, const Pod& listener);

 private:
  struct Listener {
    std::string podKey;
    std::uint64_t connId;
    int fd;
  };
  Reply dialName(const nlohmann::json& req, const Pod& caller, const std::string& qualified);
  Reply dialTcp(const nlohmann::json& req, const Pod& caller, const std::string& target, std::chrono::milliseconds timeout);
  Registry& registry_;
  Metrics& metrics_;
  std::map<std::string, Listener> names_;  // loop thread only
  std::uint64_t channelSeq_ = 0;
};

}  // namespace colo::node
