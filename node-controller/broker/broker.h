// listen and dial between pods, through the node. A dial to a name registered on this node gets a
// connected pair of Unix stream sockets, one end handed to each side with the other's identity.
// A dial to host:port gets a TCP socket connected from inside the caller's own network namespace,
// so its source address and NetworkPolicy are what they would have been.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <sys/socket.h>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "broker/channel_memory.h"
#include "colo/common/replies.h"
#include "kube/service_cache.h"
#include "metrics.h"
#include "pods/registry.h"
#include "server/seqpacket_server.h"

namespace colo::node {

inline constexpr const char* kAllowFromAnnotation = "colo.dev/allow-from";

struct BrokerLimits {
  std::size_t namesPerPod = 64;         // listen names a pod may hold
  std::size_t channelsPerMinute = 120;  // channel set-ups per pod (token bucket)
};

class Broker {
 public:
  Broker(Registry& registry, Metrics& metrics, BrokerLimits limits = {});

  Reply listen(const nlohmann::json& req, const Pod& pod, const ConnInfo& conn);
  Reply dial(const nlohmann::json& req, const Pod& pod, const ConnInfo& conn);
  // Memory for a shared-memory channel, laid out and sealed, with its two doorbells (a socketpair;
  // see channel_memory.h): hugepages within the caller's share, else ordinary memory (memfd).
  Reply channel(const nlohmann::json& req, const Pod& pod, const ConnInfo& conn);
  // A connection went away: the names it listened on go with it. (Hugepage channels it asked for
  // count against its pod's share until their memory is freed, not until it closes.)
  void connectionClosed(const ConnInfo& conn);
  // Kubernetes mode: dial resolves service/<ns>/<name>:<port> and pod/<ns>/<name>:<port> from
  // this cache (kube_dial.cpp). Set once, before or while the loop runs.
  void setServiceCache(const kube::ServiceCache* cache, std::string nodeName);
  const BrokerLimits& limits() const { return limits_; }
  // How an `incoming` event reaches a listener's connection: through the server's queue for it
  // (SeqpacketServer::post, on the loop thread), under the same bound as its replies. Set once,
  // before the server serves.
  using EventSink = std::function<Status(std::uint64_t connId, Reply event)>;
  void setEventSink(EventSink sink) { post_ = std::move(sink); }
  // Starts a TCP connect from inside a pod's netns (on a worker): a non-blocking socket whose
  // connect is in progress or done; the loop waits for it. The default enters the netns (root);
  // tests and the fuzzer put something that reaches no network in its place.
  using TcpStart = std::function<Expected<UniqueFd>(int netnsFd, const sockaddr* addr, socklen_t len, const std::string& target)>;
  static Expected<UniqueFd> startTcpInNetns(int netnsFd, const sockaddr* addr, socklen_t len, const std::string& target);
  void setTcpStart(TcpStart start) { tcpStart_ = std::move(start); }

  static proto::PodIdentity identityOf(const Pod& pod);
  // Namespace-qualified name of a registration by `pod`: "<namespace>/<name>".
  static std::string qualify(const Pod& pod, const std::string& name);
  // Default: same namespace only. The listener's pod may admit more with colo.dev/allow-from:
  // "ns1,ns2", "*", or "ns/serviceaccount" (service accounts known in Kubernetes mode).
  static bool allowed(const Pod& caller, const Pod& listener);

 private:
  struct Listener {
    std::string podKey;
    std::uint64_t connId;
  };
  EventSink post_;
  TcpStart tcpStart_ = startTcpInNetns;
  Reply dialName(const nlohmann::json& req, const Pod& caller, const std::string& qualified);
  // finish (optional) is applied to the final reply, which a TCP dial only has once the connect ends.
  Reply dialTcp(const nlohmann::json& req, const Pod& caller, const std::string& target, std::chrono::milliseconds timeout,
                std::function<Reply(Reply)> finish = {});
  Reply dialKube(const nlohmann::json& req, const Pod& caller, const proto::Target& k, const std::string& target,
                 std::chrono::milliseconds timeout);
  // The name a pod registers with listen "port/<n>": "pod/<ns>/<name>:<n>", its own per pod.
  static std::string portName(const Pod& pod, int port);
  std::atomic<const kube::ServiceCache*> services_{nullptr};
  std::string nodeName_;  // set with services_, read after it
  std::uint64_t backendTurn_ = 0;  // round robin over equal backends
  Reply dialFailed(const nlohmann::json& req, const Error& e);
  Reply makeChannel(const nlohmann::json& req, const Pod& pod, std::uint64_t asked);
  std::size_t namesOf(const std::string& podKey) const;
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last{};
  };
  Registry& registry_;
  Metrics& metrics_;
  BrokerLimits limits_;
  std::map<std::string, Listener> names_;          // loop thread only
  std::map<std::string, Bucket> channelTokens_;    // loop thread only
  std::atomic<std::uint64_t> channelSeq_{0};       // workers
  HugepageLedger hugeLedger_;                      // workers charge; the kernel's notice refunds (own lock)
};

}  // namespace colo::node
