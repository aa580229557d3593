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

#include "colo/channel_layout.h"
#include "colo/common/netns.h"

namespace colo::node {

using nlohmann::json;
namespace code = wire::code;

namespace {

bool validName(const std::string& n) {
  return !n.empty() && n.size() <= 63 && std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

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

Broker::Broker(Registry& registry, Metrics& metrics) : registry_(registry), metrics_(metrics) {
  metrics_.describe("colo_broker_listeners", "gauge", "Names registered by pods on this node.");
  metrics_.describe("colo_broker_dials_total", "counter", "Dials by transport and result.");
  metrics_.describe("colo_broker_denials_total", "counter", "Dials refused by policy.");
  metrics_.set("colo_broker_listeners", {}, 0);
  metrics_.add("colo_broker_denials_total", {}, 0);
  metrics_.describe("colo_broker_channels_total", "counter", "Shared-memory channels set up, by memory kind.");
}

json Broker::identityOf(const Pod& pod) {
  json id = {{"namespace", pod.podNamespace}, {"name", pod.name}, {"uid", pod.uid}, {"key", pod.key}};
  if (!pod.serviceAccount.empty()) id["serviceAccount"] = pod.serviceAccount;  // Kubernetes mode
  return id;
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
  const std::string name = req.value("name", "");
  // "port/<n>": this pod serves its TCP port n over colo too (dial by Kubernetes name finds it).
  const bool isPort = name.rfind("port/", 0) == 0;
  const int port = isPort && name.size() <= 10 && name.size() > 5 && std::all_of(name.begin() + 5, name.end(), ::isdigit) ? std::stoi(name.substr(5)) : 0;
  if (isPort && (port < 1 || port > 65535)) return wire::errorReply(req, code::kInvalidArgument, "listen: port/<n> takes a port from 1 to 65535");
  if (!isPort && !validName(name)) return wire::errorReply(req, code::kInvalidArgument, "listen: name must be 1..63 of [a-z0-9.-], or port/<n>");
  const std::string q = isPort ? portName(pod, port) : qualify(pod, name);
  if (auto it = names_.find(q); it != names_.end()) {
    return wire::errorReply(req, "already_exists", "listen: " + q + " is already registered by pod " + it->second.podKey);
  }
  names_[q] = Listener{pod.key, conn.id, conn.fd};
  metrics_.set("colo_broker_listeners", {}, static_cast<double>(names_.size()));
  spdlog::info("broker: pod {} listens on {}", pod.key, q);
  json r = wire::okReply(req);
  r["name"] = q;
  return r;
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
  const std::string target = req.value("target", "");
  const auto timeout = std::chrono::milliseconds(std::clamp<long long>(req.value("timeoutMs", 2000LL), 1, 10000));
  if (target.empty() || target.size() > 300) return wire::errorReply(req, code::kInvalidArgument, "dial: missing target");
  socklen_t len = 0;
  if (parseHostPort(target, len)) return dialTcp(req, pod, target, timeout);
  // A Kubernetes name has a ':' (its port), which no colo name has.
  if ((target.rfind("service/", 0) == 0 || target.rfind("pod/", 0) == 0) && target.find(':') != std::string::npos) {
    return dialKube(req, pod, target, timeout);
  }
  const std::string q = target.find('/') == std::string::npos ? qualify(pod, target) : target;
  return dialName(req, pod, q);
}

Reply Broker::dialName(const json& req, const Pod& caller, const std::string& q) {
  auto it = names_.find(q);
  if (it == names_.end()) {
    metrics_.add("colo_broker_dials_total", {{"transport", "unix"}, {"result", "not_found"}});
    return wire::errorReply(req, code::kNotFound, "dial: nothing listens on " + q + " on this node");
  }
  auto listenerPod = registry_.get(it->second.podKey);
  if (!listenerPod) return wire::errorReply(req, code::kNotFound, "dial: the pod listening on " + q + " is gone");
  if (!allowed(caller, *listenerPod)) {
    metrics_.add("colo_broker_denials_total");
    metrics_.add("colo_broker_dials_total", {{"transport", "unix"}, {"result", "denied"}});
    spdlog::warn("broker: denied: pod {}/{} may not dial {} (listener admits its own namespace{})", caller.podNamespace, caller.name, q,
                 listenerPod->annotations.is_object() && listenerPod->annotations.contains(kAllowFromAnnotation)
                     ? " and " + listenerPod->annotations[kAllowFromAnnotation].dump()
                     : "");
    return wire::errorReply(req, "permission_denied", "dial: pod " + caller.podNamespace + "/" + caller.name + " may not dial " + q);
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return wire::errorReply(req, code::kInternal, "socketpair failed");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  const json event = {{"v", wire::kVersion}, {"event", "incoming"}, {"name", q}, {"peer", identityOf(caller)}};
  const int fds[] = {theirs.get()};
  if (auto s = wire::send(it->second.fd, event, fds, /*nonBlocking=*/true); !s) {
    metrics_.add("colo_broker_dials_total", {{"transport", "unix"}, {"result", "unavailable"}});
    const bool gone = s.error().errnum == EPIPE || s.error().errnum == ECONNRESET;
    if (gone) names_.erase(it);
    return wire::errorReply(req, code::kUnavailable,
                            "dial: the listener on " + q + (gone ? " went away" : " is not accepting (its queue is full)"));
  }
  metrics_.add("colo_broker_dials_total", {{"transport", "unix"}, {"result", "ok"}});
  json r = wire::okReply(req);
  r["transport"] = "unix";
  r["peer"] = identityOf(*listenerPod);
  r["name"] = q;
  std::vector<UniqueFd> out;
  out.push_back(std::move(mine));
  return Reply(r, std::move(out));
}

Reply Broker::dialTcp(const json& req, const Pod& caller, const std::string& target, std::chrono::milliseconds timeout) {
  socklen_t len = 0;
  auto addr = parseHostPort(target, len);
  auto ns = registry_.netnsOf(caller.key);
  if (!ns) return wire::errorReply(req, code::kInternal, "dial: " + ns.error().message);
  UniqueFd sock;
  std::string errCode;
  // The socket is made inside the caller's netns: its source address and policy are the pod's own.
  auto s = netns::runIn(ns->get(), [&]() -> Status {
    sock.reset(::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!sock) return Error::fromErrno("socket");
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&*addr), len) != 0 && errno != EINPROGRESS) return Error::fromErrno("connect(" + target + ")");
    pollfd p{sock.get(), POLLOUT, 0};
    const int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r == 0) return Error::make("timeout", "connect(" + target + "): no answer within " + std::to_string(timeout.count()) + " ms");
    int soErr = 0;
    socklen_t l = sizeof(soErr);
    ::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &soErr, &l);
    if (soErr != 0) return Error::fromErrno("connect(" + target + ")", soErr);
    return {};
  });
  if (!s) {
    const auto& e = s.error();
    errCode = e.errnum == ECONNREFUSED ? "refused" : e.code == "timeout" ? "timeout" : code::kUnavailable;
    metrics_.add("colo_broker_dials_total", {{"transport", "tcp"}, {"result", errCode}});
    return wire::errorReply(req, errCode, "dial: " + e.message);
  }
  ::fcntl(sock.get(), F_SETFL, ::fcntl(sock.get(), F_GETFL) & ~O_NONBLOCK);
  metrics_.add("colo_broker_dials_total", {{"transport", "tcp"}, {"result", "ok"}});
  json r = wire::okReply(req);
  r["transport"] = "tcp";
  r["peer"] = {{"address", target}};
  std::vector<UniqueFd> out;
  out.push_back(std::move(sock));
  return Reply(r, std::move(out));
}

}  // namespace colo::node

namespace colo::node {

Reply Broker::channel(const json& req, const Pod& pod) {
  constexpr std::uint64_t kMin = 64 * 1024, kMax = 1ULL << 30, kHuge = 2ULL << 20;
  if (!req.contains("bytes") || !req["bytes"].is_number_unsigned()) return wire::errorReply(req, code::kInvalidArgument, "channel: missing 'bytes'");
  const std::uint64_t asked = req["bytes"].get<std::uint64_t>();
  if (asked < kMin || asked > kMax) return wire::errorReply(req, code::kInvalidArgument, "channel: bytes must be between 64Ki and 1Gi");
  UniqueFd mem;
  std::string memory = "memfd", note;
  std::uint64_t size = asked;
  if (pod.hugepageBytes > 0) {
    size = (asked + kHuge - 1) / kHuge * kHuge;
    const std::string path = pod.endpointDir + "/hugepages/.colo-channel-" + std::to_string(++channelSeq_);
    UniqueFd f(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (f && ::ftruncate(f.get(), static_cast<off_t>(size)) == 0) {
      mem = std::move(f);
      memory = "hugepages";
    } else {
      note = "the pod's hugepages have no room for " + std::to_string(size) + " bytes; ordinary memory instead";
    }
    ::unlink(path.c_str());  // the descriptors keep it; nothing is left in the pod's mount
  } else {
    note = "the pod has no hugepages (annotation colo.dev/hugepages); ordinary memory instead";
  }
  if (!mem) {
    size = asked;
    mem.reset(::memfd_create("colo-channel", MFD_CLOEXEC));
    if (!mem || ::ftruncate(mem.get(), static_cast<off_t>(size)) != 0) return wire::errorReply(req, code::kInternal, "channel: memfd failed");
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, mem.get(), 0);
  if (base == MAP_FAILED) return wire::errorReply(req, code::kInternal, std::string("channel: mmap: ") + std::strerror(errno));
  const std::uint64_t capacity = colo_channel_layout_init(base, size);
  ::munmap(base, size);
  if (capacity == 0) return wire::errorReply(req, code::kInvalidArgument, "channel: too small");
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(mem));
  fds.emplace_back(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  fds.emplace_back(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fds[1] || !fds[2]) return wire::errorReply(req, code::kInternal, "channel: eventfd failed");
  metrics_.add("colo_broker_channels_total", {{"memory", memory}});
  if (!note.empty()) spdlog::info("broker: channel for pod {}: {}", pod.key, note);
  json r = wire::okReply(req);
  r["memory"] = memory;
  r["bytes"] = size;
  r["ringCapacity"] = capacity;
  if (!note.empty()) r["note"] = note;
  return Reply(r, std::move(fds));
}

}  // namespace colo::node
