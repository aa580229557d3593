// libFuzzer target over colo-node's request handlers as a client reaches them: each input is one
// packet sent to a real SeqpacketServer, either the CNI socket's (CniHandler, with a network
// namespace descriptor attached or not) or a pod endpoint's (PodApi: admission, hello, listen,
// dial by name, address and Kubernetes name, channel), wired as colo-node wires them (agent.cpp):
// the same handlers, limits, admission check and event path. The reply must be one well-formed
// reply, never `internal`.
//
// No root and no network: the pod's netns is the fuzzer's own (opened from /proc, never entered),
// the pod hooks are NoHooks (no endpoint, mount or BPF), and a TCP dial's connect is replaced
// through Broker::setTcpStart by a socketpair (or a refusal), so a fuzzed address reaches nothing.
// Built with clang -fsanitize=fuzzer,address,undefined (test/fuzz/CMakeLists.txt).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "colo/common/netns.h"
#include "colo/common/replies.h"
#include "colo/common/wire.h"
#include "config.h"
#include "endpoints/pod_api.h"
#include "kube/service_cache.h"
#include "metrics.h"
#include "pods/cni_handler.h"
#include "pods/pod_hooks.h"
#include "pods/pod_lifecycle.h"
#include "pods/registry.h"
#include "server/seqpacket_server.h"

namespace {

using namespace colo;
using namespace colo::node;
using nlohmann::json;

// Stands in for a connect from inside the pod's netns: ports divisible by 3 are refused, others
// get one end of a connected socketpair (its peer closed: the dialer sees a connection that ends).
Expected<UniqueFd> fakeTcpStart(int, const sockaddr* addr, socklen_t, const std::string& target) {
  const auto port = addr->sa_family == AF_INET6 ? ntohs(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_port)
                                                : ntohs(reinterpret_cast<const sockaddr_in*>(addr)->sin_port);
  if (port % 3 == 0) return Error::fromErrno("connect(" + target + ")", ECONNREFUSED);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return Error::fromErrno("socketpair");
  ::close(sv[1]);
  return UniqueFd(sv[0]);
}

struct Harness {
  std::string dir;
  Config config;
  Metrics metrics;
  std::unique_ptr<Registry> registry;
  NoHooks hooks;
  std::unique_ptr<PodLifecycle> lifecycle;
  std::unique_ptr<CniHandler> cni;
  std::unique_ptr<PodApi> pods;
  kube::ServiceCache services;
  std::unique_ptr<SeqpacketServer> cniServer, podServer;
  UniqueFd podNetns;
  UniqueFd cniConn, podConn;

  Harness() {
    char tmpl[] = "/tmp/colo-fuzz-handlers-XXXXXX";
    dir = ::mkdtemp(tmpl);
    config.runDir = dir + "/run";
    config.stateDir = dir + "/state";
    config.nodeName = "fuzz-node";
    std::filesystem::create_directories(config.stateDir + "/pods");
    auto ns = netns::open("/proc/self/ns/net");
    if (!ns) {
      std::fprintf(stderr, "fuzz_handlers: %s\n", ns.error().message.c_str());
      std::abort();
    }
    podNetns = std::move(ns.value());
    registry = std::make_unique<Registry>(config.stateDir);
    lifecycle = std::make_unique<PodLifecycle>(*registry, hooks, metrics);
    // The "host" is a namespace that does not exist, so that the fuzzer's own netns, attached to a
    // cni.add, is a pod's and not refused as hostNetwork.
    cni = std::make_unique<CniHandler>(*registry, *lifecycle, metrics, netns::Identity{~0ULL, ~0ULL, ~0ULL});
    pods = std::make_unique<PodApi>(config, *registry, metrics);
    pods->broker().setTcpStart(fakeTcpStart);
    // Kubernetes names resolve too: Service web (80 "http" -> 8080) with a backend on this node
    // (the fuzz pod, which may listen port/8080) and one elsewhere.
    services.replaceServices({json::parse(R"({"metadata":{"name":"web","namespace":"default"},
        "spec":{"clusterIP":"198.18.0.100","ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080}]}})")});
    services.replaceSlices({json::parse(R"({"metadata":{"name":"web-1","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},
        "addressType":"IPv4","ports":[{"name":"http","protocol":"TCP","port":8080}],
        "endpoints":[{"addresses":["198.18.0.2"],"nodeName":"fuzz-node","conditions":{"ready":true},"targetRef":{"kind":"Pod","namespace":"default","name":"fuzz"}},
                     {"addresses":["198.18.0.3"],"nodeName":"other","targetRef":{"kind":"Pod","namespace":"default","name":"far"}}]})")});
    pods->setServiceCache(&services);
    Pod pod;
    pod.key = "fuzz-pod";
    pod.podNamespace = "default";
    pod.name = "fuzz";
    pod.ips = {"198.18.0.2/24"};
    pod.active = true;
    pod.netns = *netns::inspect(podNetns.get());
    if (!registry->put(pod, UniqueFd(::dup(podNetns.get())))) std::abort();
    // As agent.cpp wires them.
    ServerLimits cniLimits;
    cniLimits.maxConnectionsPerTag = cniLimits.maxConnections;
    cniServer = std::make_unique<SeqpacketServer>(
        "cni", metrics, [this](wire::Message& m, const ConnInfo&) -> Reply { return cni->handle(m); }, nullptr, nullptr, cniLimits);
    podServer = std::make_unique<SeqpacketServer>(
        "pods", metrics, [this](wire::Message& m, const ConnInfo& c) { return pods->handle(m, c); },
        [this](const ConnInfo& c) { return pods->admit(c); }, [this](const ConnInfo& c) { pods->connectionClosed(c); },
        PodApi::serverLimits());
    pods->broker().setEventSink([this](std::uint64_t id, Reply e) { return podServer->post(id, std::move(e)); });
    if (!cniServer->start() || !podServer->start() || !cniServer->listen(dir + "/cni.sock", 0600, "cni") ||
        !podServer->listen(dir + "/colo.sock", 0666, "fuzz-pod")) {
      std::abort();
    }
  }

  UniqueFd& conn(bool cniSide) {
    UniqueFd& c = cniSide ? cniConn : podConn;
    if (!c) {
      auto made = wire::connectUnix(dir + (cniSide ? "/cni.sock" : "/colo.sock"));
      if (!made) std::abort();
      c = std::move(made.value());
    }
    return c;
  }
};

Harness& harness() {
  static Harness* h = new Harness();  // never destroyed: its threads serve until the process ends
  return *h;
}

// An ok reply must read back through its op's parser, as libcolo and colo-cni read it.
colo::Status readsBack(const std::string& op, const json& body) {
  using namespace colo::proto;
  const auto check = [&](auto parsed) -> colo::Status {
    if (!parsed) return parsed.error();
    return {};
  };
  if (op == "hello") return check(parseHelloReply(body));
  if (op == "listen") return check(parseListenReply(body));
  if (op == "dial") return check(parseDialReply(body));
  if (op == "channel") return check(parseChannelReply(body));
  if (op == "cni.add") return check(parseCniAddReply(body));
  if (op == "cni.del") return check(parseCniDelReply(body));
  if (op == "cni.check") return check(parseCniCheckReply(body));
  if (op == "cni.status") return check(parseCniStatusReply(body));
  if (op == "cni.gc") return check(parseCniGcReply(body));
  return {};
}

[[noreturn]] void bad(const char* why, const json& reply) {
  std::fprintf(stderr, "fuzz_handlers: %s: %s\n", why, reply.dump().c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0 || size > wire::kMaxMessage) return 0;
  Harness& h = harness();
  // The first byte picks the socket and whether a netns descriptor rides along; the rest is the packet.
  const bool cniSide = data[0] & 1, withNetns = data[0] & 2;
  UniqueFd& c = h.conn(cniSide);
  int fds[] = {h.podNetns.get()};
  auto sent = wire::sendRaw(c.get(), data + 1, size - 1, withNetns ? std::span<const int>(fds) : std::span<const int>());
  if (!sent) {
    c.reset();
    return 0;
  }
  // Every packet gets exactly one reply (a dial's wait is at most 10 s). Events (a name this
  // connection listens on was dialed, by itself) come unsolicited before it: skip them.
  for (int skipped = 0;; ++skipped) {
    if (!wire::waitReadable(c.get(), std::chrono::seconds(12))) bad("no reply within 12 s", nullptr);
    auto reply = wire::recv(c.get());
    if (!reply) {
      if (reply.error().code != "closed") bad(("unreadable reply: " + reply.error().message).c_str(), nullptr);
      c.reset();  // the server may close a connection (a cut, a refused one); the next input dials again
      return 0;
    }
    const json& body = reply->body;
    if (body.contains("event")) {
      if (!proto::parseIncomingEvent(body) || reply->fds.size() != 1 || skipped > 64) bad("unexpected event", body);
      continue;
    }
    if (!body.contains("ok") || !body["ok"].is_boolean()) bad("reply without a boolean ok", body);
    if (!body["ok"].get<bool>()) {
      const auto& err = body["error"];
      if (!err.is_object() || !err["code"].is_string() || !proto::errorCodeFrom(err["code"].get<std::string>())) bad("bad error", body);
      if (err["code"] == "internal") bad("internal error for a client's input", body);
    } else if (auto req = proto::parseMessage(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1)); req && (*req)["op"].is_string()) {
      if (auto s = readsBack((*req)["op"].get<std::string>(), body); !s) bad(("ok reply its parser refuses: " + s.error().message).c_str(), body);
    }
    return 0;
  }
}
