#include "broker/broker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "broker/channel_memory.h"
#include "colo/channel_layout.h"
#include "colo/common/netns.h"
#include "log/log_limiter.h"

namespace colo::node {

using nlohmann::json;
using proto::ErrorCode;

namespace {

// "198.18.0.7:8080" or "[fd00::7]:8080" -> sockaddr; nullopt when it is not host:port.
std::optional<sockaddr_storage> parseHostPort(const std::string& t, socklen_t& len) {
  const auto colon = t.rfind(':');
  if (colon == std::string::npos || colon + 1 >= t.size()) return std::nullopt;
  std::string host = t.substr(0, colon);
  const std::string port = t.substr(colon + 1);
  if (!std::all_of(port.begin(), port.end(), ::isdigit) || port.size() > 5) return std::nullopt;
  const int p = std::stoi(port);
  if (p < 1 || p > 65535) return std::nullopt;
  sockaddr_storage ss{};
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6->sin6_addr) != 1) return std::nullopt;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<std::uint16_t>(p));
    len = sizeof(sockaddr_in6);
    return ss;
  }
  auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
  if (::inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) return std::nullopt;
  a4->sin_family = AF_INET;
  a4->sin_port = htons(static_cast<std::uint16_t>(p));
  len = sizeof(sockaddr_in);
  return ss;
}

}  // namespace

Broker::Broker(Registry& registry, Metrics& metrics, BrokerLimits limits) : registry_(registry), metrics_(metrics), limits_(limits) {
  metrics_.describe("colo_broker_channel_fallbacks_total", "counter", "Channels given ordinary memory although the pod has hugepages, by reason.");
  metrics_.describe("colo_broker_listeners", "gauge", "Names registered by pods on this node.");
  metrics_.describe("colo_broker_dials_total", "counter", "Dials by transport and result.");
  metrics_.describe("colo_broker_denials_total", "counter", "Dials refused by policy.");
  metrics_.set("colo_broker_listeners", {}, 0);
  metrics_.add("colo_broker_denials_total", {}, 0);
  metrics_.describe("colo_broker_channels_total", "counter", "Shared-memory channels set up, by memory kind.");
}

proto::PodIdentity Broker::identityOf(const Pod& pod) {
  return {pod.podNamespace, pod.name, pod.uid, pod.key, pod.serviceAccount};  // serviceAccount: Kubernetes mode
}

std::string Broker::qualify(const Pod& pod, const std::string& name) {
  return (pod.podNamespace.empty() ? std::string("default") : pod.podNamespace) + "/" + name;
}

bool Broker::allowed(const Pod& caller, const Pod& listener) {
  const auto ns = [](const Pod& p) { return p.podNamespace.empty() ? std::string("default") : p.podNamespace; };
  if (ns(caller) == ns(listener)) return true;
  if (!listener.annotations.is_object() || !listener.annotations.contains(kAllowFromAnnotation)) return false;
  const auto& v = listener.annotations[kAllowFromAnnotation];
  if (!v.is_string()) return false;
  std::stringstream ss(v.get<std::string>());
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(std::remove(item.begin(), item.end(), ' '), item.end());
    if (item == "*" || item == ns(caller)) return true;
    // "ns/serviceaccount": one service account, as the API server reported it for the caller
    // (Kubernetes mode); a caller whose service account is unknown never matches.
    if (!caller.serviceAccount.empty() && item == ns(caller) + "/" + caller.serviceAccount) return true;
  }
  return false;
}

Reply Broker::listen(const json& req, const Pod& pod, const ConnInfo& conn) {
  auto parsed = proto::parseListen(req);
  if (!parsed) return proto::errorReply(req, proto::codeOf(parsed.error()), parsed.error().message);
  const std::string& name = parsed->name;
  // "port/<n>": this pod serves its TCP port n over colo too (dial by Kubernetes name finds it).
  const int port = parsed->port;
  const std::string q = port > 0 ? portName(pod, port) : qualify(pod, name);
  if (auto it = names_.find(q); it != names_.end()) {
    return proto::errorReply(req, ErrorCode::AlreadyExists, "listen: " + q + " is already registered by pod " + it->second.podKey);
  }
  if (namesOf(pod.key) >= limits_.namesPerPod) {
    metrics_.add("colo_wire_resource_exhausted_total", {{"socket", "pods"}, {"cap", "names"}});
    return proto::errorReply(req, ErrorCode::ResourceExhausted, "listen: this pod has " + std::to_string(limits_.namesPerPod) + " names registered (the cap)");
  }
  names_[q] = Listener{pod.key, conn.id};
  metrics_.set("colo_broker_listeners", {}, static_cast<double>(names_.size()));
  spdlog::info("broker: pod {} listens on {}", pod.key, q);
  Reply reply(proto::okReply(req, proto::ListenReply{q}));
  reply.keepOpen = true;  // a listener waits quietly for incoming dials
  return reply;
}

std::size_t Broker::namesOf(const std::string& podKey) const {
  return static_cast<std::size_t>(std::count_if(names_.begin(), names_.end(), [&](const auto& kv) { return kv.second.podKey == podKey; }));
}

void Broker::connectionClosed(const ConnInfo& conn) {
  for (auto it = names_.begin(); it != names_.end();) {
    if (it->second.connId == conn.id) {
      spdlog::info("broker: {} released (its listener went away)", it->first);
      it = names_.erase(it);
    } else {
      ++it;
    }
  }
  metrics_.set("colo_broker_listeners", {}, static_cast<double>(names_.size()));
}

Reply Broker::dial(const json& req, const Pod& pod, const ConnInfo&) {
  // The target's form is checked here, as every client checks it (proto::parseTarget):
  // anything malformed is invalid_argument, never a not_found for a name nobody could hold.
  auto parsed = proto::parseDial(req);
  if (!parsed) return proto::errorReply(req, proto::codeOf(parsed.error()), parsed.error().message);
  const proto::Target& t = parsed->parsed;
  switch (t.kind) {
    case proto::Target::Kind::Address: return dialTcp(req, pod, parsed->target, parsed->timeout);
    case proto::Target::Kind::Kube: return dialKube(req, pod, t, parsed->target, parsed->timeout);
    case proto::Target::Kind::Name: break;
  }
  return dialName(req, pod, t.ns.empty() ? qualify(pod, t.name) : t.ns + "/" + t.name);
}

Reply Broker::dialName(const json& req, const Pod& caller, const std::string& q) {
  auto it = names_.find(q);
  if (it == names_.end()) {
    metrics_.add("colo_broker_dials_total", {{"transport", "unix"}, {"result", "not_found"}});
    return proto::errorReply(req, ErrorCode::NotFound, "dial: nothing listens on " + q + " on this node");
  }
  auto listenerPod = registry_.get(it->second.podKey);
  if (!listenerPod) return proto::errorReply(req, ErrorCode::NotFound, "dial: the pod listening on " + q + " is gone");
  if (!allowed(caller, *listenerPod)) {
    metrics_.add("colo_broker_denials_total");
    metrics_.add("colo_broker_dials_total", {{"transport", "unix"}, {"result", "denied"}});
    // Per caller: a pod dialing what it may not in a loop costs a few lines (the counter has all).
    if (warnLimiter().allow("broker: dials denied to pod " + caller.key)) {
      spdlog::warn("broker: denied: pod {}/{} may not dial {} (listener admits its own namespace{})", caller.podNamespace, caller.name, q,
                   listenerPod->annotations.is_object() && listenerPod->annotations.contains(kAllowFromAnnotation)
                       ? " and " + listenerPod->annotations[kAllowFromAnnotation].dump()
                       : "");
    }
    return proto::errorReply(req, ErrorCode::PermissionDenied, "dial: pod " + caller.podNamespace + "/" + caller.name + " may not dial " + q);
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return proto::errorReply(req, ErrorCode::Internal, "socketpair failed");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  // The event goes through the listener connection's queue, bounded like its replies: a listener
  // that does not read its events is cut off (and its names released), never waited for.
  std::vector<UniqueFd> given;
  given.push_back(std::move(theirs));
  Reply event(json(proto::IncomingEvent{q, identityOf(caller)}), std::move(given));
  if (!post_) return proto::errorReply(req, ErrorCode::Internal, "dial: no way to reach listeners (colo-node's broker is not wired to its server)");
  if (auto s = post_(it->second.connId, std::move(event)); !s) {
    metrics_.add("colo_broker_dials_total", {{"transport", "unix"}, {"result", "unavailable"}});
    return proto::errorReply(req, ErrorCode::Unavailable, "dial: the listener on " + q + " is not available: " + s.error().message);
  }
  metrics_.add("colo_broker_dials_total", {{"transport", "unix"}, {"result", "ok"}});
  proto::DialReply r;
  r.transport = proto::Transport::Unix;
  r.peer = identityOf(*listenerPod);
  r.name = q;
  std::vector<UniqueFd> out;
  out.push_back(std::move(mine));
  return Reply(proto::okReply(req, r), std::move(out));
}

// Slow in two ways, and neither may hold the pods loop: the socket is made inside the caller's
// netns on a worker (setns needs a thread of its own), and the connect is waited for by the loop's
// poll, not by any thread.
Reply Broker::dialTcp(const json& req, const Pod& caller, const std::string& target, std::chrono::milliseconds timeout,
                      std::function<Reply(Reply)> finish) {
  if (!finish) finish = [](Reply r) { return r; };
  return Reply::later([this, req, key = caller.key, target, timeout, finish]() -> Reply {
    socklen_t len = 0;
    auto addr = parseHostPort(target, len);
    // A pod's or Service's address from the API can be anything; a pod's own target was checked.
    if (!addr) return finish(proto::errorReply(req, ErrorCode::InvalidArgument, "dial: " + target + " is not ip:port or [ipv6]:port"));
    auto ns = registry_.netnsOf(key);
    if (!ns) return finish(proto::errorReply(req, ErrorCode::NotFound, "dial: " + ns.error().message));
    auto sock = tcpStart_(ns->get(), reinterpret_cast<const sockaddr*>(&*addr), len, target);
    if (!sock) return finish(dialFailed(req, sock.error()));
    Reply::Wait w;
    w.fd = std::move(sock.value());
    w.events = POLLOUT;
    w.deadline = Reply::Clock::now() + timeout;
    w.done = [this, req, target, timeout, finish](UniqueFd fd, short revents) -> Reply {
      if (revents == 0) {
        return finish(dialFailed(req, proto::error(ErrorCode::Timeout, "connect(" + target + "): no answer within " + std::to_string(timeout.count()) + " ms")));
      }
      int soErr = 0;
      socklen_t l = sizeof(soErr);
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soErr, &l);
      if (soErr != 0) return finish(dialFailed(req, Error::fromErrno("connect(" + target + ")", soErr)));
      ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
      metrics_.add("colo_broker_dials_total", {{"transport", "tcp"}, {"result", "ok"}});
      proto::DialReply r;
      r.transport = proto::Transport::Tcp;
      r.address = target;
      std::vector<UniqueFd> out;
      out.push_back(std::move(fd));
      return finish(Reply(proto::okReply(req, r), std::move(out)));
    };
    return Reply::whenReady(std::move(w));
  });
}

// The socket is made inside the caller's netns: its source address and policy are the pod's own.
Expected<UniqueFd> Broker::startTcpInNetns(int netnsFd, const sockaddr* addr, socklen_t len, const std::string& target) {
  UniqueFd sock;
  auto s = netns::runIn(netnsFd, [&]() -> Status {
    sock.reset(::socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!sock) return Error::fromErrno("socket");
    if (::connect(sock.get(), addr, len) != 0 && errno != EINPROGRESS) return Error::fromErrno("connect(" + target + ")");
    return {};
  });
  if (!s) return s.error();
  return sock;
}

Reply Broker::dialFailed(const json& req, const Error& e) {
  const ErrorCode errCode = e.errnum == ECONNREFUSED ? ErrorCode::Refused : proto::codeOf(e) == ErrorCode::Timeout ? ErrorCode::Timeout : ErrorCode::Unavailable;
  metrics_.add("colo_broker_dials_total", {{"transport", "tcp"}, {"result", std::string(proto::name(errCode))}});
  return proto::errorReply(req, errCode, "dial: " + e.message);
}

}  // namespace colo::node

namespace colo::node {

Reply Broker::channel(const json& req, const Pod& pod, const ConnInfo&) {
  auto parsed = proto::parseChannel(req);
  if (!parsed) return proto::errorReply(req, proto::codeOf(parsed.error()), parsed.error().message);
  // At most channelsPerMinute set-ups per pod (a token bucket): the memory is the pods' own once
  // mapped, but each set-up costs colo-node a memfd, a mapping and a socketpair.
  const auto now = std::chrono::steady_clock::now();
  if (channelTokens_.size() > 4096) {  // pods long gone (a full bucket after a minute is a fresh one)
    std::erase_if(channelTokens_, [&](const auto& kv) { return now - kv.second.last > std::chrono::minutes(1); });
  }
  auto& bucket = channelTokens_[pod.key];
  if (bucket.last.time_since_epoch().count() == 0) bucket = {static_cast<double>(limits_.channelsPerMinute), now};
  bucket.tokens = std::min<double>(static_cast<double>(limits_.channelsPerMinute),
                                   bucket.tokens + std::chrono::duration<double>(now - bucket.last).count() * static_cast<double>(limits_.channelsPerMinute) / 60.0);
  bucket.last = now;
  if (bucket.tokens < 1.0) {
    metrics_.add("colo_wire_resource_exhausted_total", {{"socket", "pods"}, {"cap", "channels"}});
    return proto::errorReply(req, ErrorCode::ResourceExhausted, "channel: this pod set up " + std::to_string(limits_.channelsPerMinute) +
                                                             " channels in the last minute (the cap); try again shortly");
  }
  bucket.tokens -= 1.0;
  return Reply::later([this, req, pod, asked = parsed->bytes] { return makeChannel(req, pod, asked); });
}

// On a worker: files, mappings and page faults are not for the loop.
Reply Broker::makeChannel(const json& req, const Pod& pod, std::uint64_t asked) {
  // Hugepage channels are charged to the pod until the kernel frees their pages (HugepageLedger),
  // however the pods pass the memory around or close the connection that asked.
  auto made = makeChannelMemory(asked, pod.key, pod.hugepageBytes, pod.hugepageBytes ? pod.endpointDir + "/hugepages" : "", hugeLedger_);
  if (!made) return proto::errorReply(req, ErrorCode::ResourceExhausted, "channel: " + made.error().str());
  auto& cm = *made;
  if (!cm.fallback.empty()) metrics_.add("colo_broker_channel_fallbacks_total", {{"reason", cm.fallback}});
  const proto::ChannelReply r{cm.memory, cm.size, cm.capacity, cm.note};
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(cm.mem));
  fds.push_back(std::move(cm.bell0));
  fds.push_back(std::move(cm.bell1));
  metrics_.add("colo_broker_channels_total", {{"memory", r.memory}});
  if (!r.note.empty()) spdlog::info("broker: channel for pod {}: {}", pod.key, r.note);
  return Reply(proto::okReply(req, r), std::move(fds));
}

}  // namespace colo::node
