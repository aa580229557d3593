// dial by Kubernetes name: service/<namespace>/<name>:<port> (a port number or name) and
// pod/<namespace>/<name>:<port>, resolved from colo-node's watch of Services and EndpointSlices.
// Nearest first: a ready backend on this node that serves colo name port/<targetPort> gets a
// Unix pair with identities (policy as for names); else a ready backend on this node gets TCP to
// its pod IP; else TCP to the ClusterIP, both from the caller's netns (NetworkPolicy as ever).
// The reply's "route" says which, and why (a failure's message says it too). colo's policy decides
// only the Unix pair: when it refuses one, the dial goes on to the next way (TCP to the pod IP,
// then the ClusterIP), where NetworkPolicy decides as it would without colo.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "broker/broker.h"

namespace colo::node {

using nlohmann::json;
using proto::ErrorCode;

namespace {

std::string hostPort(const std::string& ip, int port) {
  return (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

std::string bare(const std::string& cidr) { return cidr.substr(0, cidr.find('/')); }

}  // namespace

void Broker::setServiceCache(const kube::ServiceCache* cache, std::string nodeName) {
  nodeName_ = std::move(nodeName);
  services_.store(cache, std::memory_order_release);
}

std::string Broker::portName(const Pod& pod, int port) {
  return "pod/" + (pod.podNamespace.empty() ? std::string("default") : pod.podNamespace) + "/" + pod.name + ":" + std::to_string(port);
}

Reply Broker::dialKube(const json& req, const Pod& caller, const proto::Target& kt, const std::string& target,
                       std::chrono::milliseconds timeout) {
  const kube::ServiceCache* cache = services_.load(std::memory_order_acquire);
  if (!cache) {
    return proto::errorReply(req, ErrorCode::InvalidArgument, "dial " + target + ": Kubernetes names need colo-node in Kubernetes mode (it runs standalone)");
  }
  const proto::Target* k = &kt;  // its form checked by proto::parseTarget
  // Each way out says how it went and why, on success and on failure alike.
  auto stamp = [](Reply r, const std::string& via, const std::string& why) {
    r.body["route"] = proto::Route{via, why};  // failed dials carry it too
    if (!r.body.value("ok", false) && r.body.contains("error") && r.body["error"].is_object()) {
      r.body["error"]["message"] = r.body["error"].value("message", "") + " (route " + via + ": " + why + ")";
    }
    return r;
  };
  auto routed = [&](Reply r, const char* via, const std::string& why) {
    spdlog::debug("broker: {} dials {}: {} ({})", caller.key, target, via, why);
    return stamp(std::move(r), via, why);
  };
  // A TCP dial's reply exists only once its connect ends: the route is stamped on it then.
  auto tcpRouted = [&](const std::string& hp, const char* via, const std::string& why) {
    spdlog::debug("broker: {} dials {}: {} ({})", caller.key, target, via, why);
    return dialTcp(req, caller, hp, timeout, [stamp, via = std::string(via), why](Reply r) { return stamp(std::move(r), via, why); });
  };
  auto listening = [&](const std::string& key) { return names_.count(key) != 0; };
  auto denied = [](const Reply& r) {
    auto head = proto::parseReplyHead(r.body);
    return head && !head->ok && head->error.code == ErrorCode::PermissionDenied;
  };
  // Set when colo's policy refused the Unix pair: the TCP ways below say so in their why.
  std::string refused;

  if (k->kubeKind == "pod") {
    const int port = k->portNumber;
    const std::string key = "pod/" + k->ns + "/" + k->name + ":" + k->port;
    if (listening(key)) {
      const std::string why = "pod " + k->ns + "/" + k->name + " is on this node and serves colo name port/" + k->port;
      Reply r = dialName(req, caller, key);
      if (!denied(r)) return routed(std::move(r), "unix", why);
      refused = why + ", but colo policy refused the Unix pair (" + r.body["error"].value("message", "") + "); TCP instead";
    }
    for (const auto& p : registry_.list()) {
      if ((p.podNamespace.empty() ? "default" : p.podNamespace) == k->ns && p.name == k->name && !p.ips.empty()) {
        return tcpRouted(hostPort(bare(p.ips[0]), port), "pod-ip",
                      !refused.empty() ? refused : "pod " + k->ns + "/" + k->name + " is on this node but does not serve colo name port/" + k->port);
      }
    }
    if (auto ip = cache->podAddress(k->ns, k->name)) {
      return tcpRouted(hostPort(*ip, port), "pod-ip", "pod " + k->ns + "/" + k->name + " is on another node");
    }
    return proto::errorReply(req, ErrorCode::NotFound, "dial " + target + ": pod " + k->ns + "/" + k->name +
                                                      " is not on this node and no EndpointSlice names it");
  }

  auto svc = cache->service(k->ns, k->name, k->port);
  if (!svc) return proto::errorReply(req, proto::codeOf(svc.error()), "dial " + target + ": " + svc.error().message);
  std::vector<kube::Backend> local;
  for (const auto& b : svc->ready) {
    if (b.nodeName == nodeName_) local.push_back(b);
  }
  const std::string svcName = "service " + k->ns + "/" + k->name;
  // 1. A ready backend here that serves its target port over colo: a Unix pair.
  std::vector<std::string> unix;
  for (const auto& b : local) {
    const std::string key = "pod/" + b.podNs + "/" + b.podName + ":" + std::to_string(b.targetPort);
    if (!b.podName.empty() && listening(key)) unix.push_back(key);
  }
  if (!unix.empty()) {
    const std::string& key = unix[backendTurn_++ % unix.size()];
    const std::string why = svcName + ": ready backend " + key.substr(4, key.rfind(':') - 4) +
                            " is on this node and serves colo name port/" + key.substr(key.rfind(':') + 1);
    Reply r = dialName(req, caller, key);
    if (!denied(r)) return routed(std::move(r), "unix", why);
    // colo's policy covers Unix pairs only; TCP is for NetworkPolicy to decide, as without colo.
    refused = why + ", but colo policy refused the Unix pair (" + r.body["error"].value("message", "") + "); TCP instead";
  }
  // 2. A ready backend here: TCP to its pod IP.
  if (!local.empty()) {
    const auto& b = local[backendTurn_++ % local.size()];
    return tcpRouted(hostPort(b.address, b.targetPort), "pod-ip",
                  !refused.empty() ? refused + " to ready backend " + b.podNs + "/" + b.podName + "'s pod IP"
                                   : svcName + ": ready backend " + b.podNs + "/" + b.podName +
                                         " is on this node but does not serve colo name port/" + std::to_string(b.targetPort));
  }
  // 3. Elsewhere: the ClusterIP (kube-proxy or the CNI balances), or a backend of a headless service.
  const std::string why = svc->ready.empty() ? svcName + " has no ready backend on this node (none at all)" : svcName + " has no ready backend on this node";
  if (!svc->clusterIP.empty() && svc->clusterIP != "None") {
    return tcpRouted(hostPort(svc->clusterIP, svc->port.port), "cluster-ip", why);
  }
  if (!svc->ready.empty()) {
    const auto& b = svc->ready[backendTurn_++ % svc->ready.size()];
    return tcpRouted(hostPort(b.address, b.targetPort), "pod-ip", why + "; headless: a backend's pod IP");
  }
  return proto::errorReply(req, ErrorCode::Unavailable, "dial " + target + ": " + svcName + " is headless and has no ready backend");
}

}  // namespace colo::node
