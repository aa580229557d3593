// libFuzzer target over colo-node's request handlers as a client reaches them: each input is one
// packet sent to a real SeqpacketServer, on the CNI socket (CniHandler, with the pod's netns
// attached or not) or on a pod's endpoint (PodApi and the broker), and the reply must be one
// well-formed JSON reply. The pod lives in an empty network namespace of its own, so a fuzzed
// `dial` to an address reaches nothing (the harness needs root for that namespace and refuses to
// run without it). Built with clang -fsanitize=fuzzer,address,undefined (test/fuzz/CMakeLists.txt).
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "colo/common/netns.h"
#include "colo/common/wire.h"
#include "config.h"
#include "endpoints/pod_api.h"
#include "metrics.h"
#include "pods/cni_handler.h"
#include "pods/pod_hooks.h"
#include "pods/pod_lifecycle.h"
#include "pods/registry.h"
#include "server/seqpacket_server.h"

namespace {

using namespace colo;
using namespace colo::node;

struct NoHooks final : PodHooks {
  Status attach(Pod&, int, bool, std::vector<std::string>&) override { return {}; }
  Status detach(const Pod&) override { return {}; }
};

struct Harness {
  std::string dir;
  Config config;
  Metrics metrics;
  std::unique_ptr<Registry> registry;
  NoHooks hooks;
  std::unique_ptr<PodLifecycle> lifecycle;
  std::unique_ptr<CniHandler> cni;
  std::unique_ptr<PodApi> pods;
  std::unique_ptr<SeqpacketServer> cniServer, podServer;
  UniqueFd podNetns;
  UniqueFd cniConn, podConn;

  Harness() {
    char tmpl[] = "/tmp/colo-fuzz-XXXXXX";
    dir = ::mkdtemp(tmpl);
    config.runDir = dir + "/run";
    config.stateDir = dir + "/state";
    config.nodeName = "fuzz";
    std::filesystem::create_directories(config.stateDir);
    // An empty netns for the pod: nothing a fuzzed dial names can be reached from it.
    std::thread([&] {
      if (::unshare(CLONE_NEWNET) == 0) podNetns.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    }).join();
    if (!podNetns) {
      std::fprintf(stderr, "fuzz_handlers: needs root (CAP_SYS_ADMIN) for the pod's own network namespace\n");
      std::exit(77);
    }
    registry = std::make_unique<Registry>(config.stateDir);
    lifecycle = std::make_unique<PodLifecycle>(*registry, hooks, metrics);
    cni = std::make_unique<CniHandler>(*registry, *lifecycle, metrics, *netns::current());
    pods = std::make_unique<PodApi>(config, *registry, metrics);
    Pod pod;
    pod.key = "fuzz-pod";
    pod.podNamespace = "default";
    pod.name = "fuzz";
    pod.netns = *netns::inspect(podNetns.get());
    (void)registry->put(pod, UniqueFd(::dup(podNetns.get())));
    cniServer = std::make_unique<SeqpacketServer>("cni", metrics, [this](wire::Message& m, const ConnInfo&) -> Reply {
      if (CniHandler::handles(m.body.value("op", ""))) return cni->handle(m);
      return wire::errorReply(m.body, wire::code::kUnknownOp, "unknown op");
    });
    ServerLimits l;
    l.workers = 2;
    podServer = std::make_unique<SeqpacketServer>(
        "pods", metrics, [this](wire::Message& m, const ConnInfo& c) { return pods->handle(m, c); }, nullptr,
        [this](const ConnInfo& c) { pods->connectionClosed(c); }, l);
    if (!cniServer->start() || !podServer->start() || !cniServer->listen(dir + "/cni.sock", 0600, "cni") ||
        !podServer->listen(dir + "/pod.sock", 0600, "fuzz-pod")) {
      std::abort();
    }
  }

  UniqueFd& conn(bool cniSide) {
    UniqueFd& c = cniSide ? cniConn : podConn;
    if (!c) c = std::move(wire::connectUnix(dir + (cniSide ? "/cni.sock" : "/pod.sock")).value());
    return c;
  }
};

Harness& harness() {
  static Harness h;
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0 || size > wire::kMaxMessage) return 0;
  Harness& h = harness();
  const bool cniSide = data[0] & 1, withNetns = data[0] & 2;
  UniqueFd& c = h.conn(cniSide);
  int fds[] = {h.podNetns.get()};
  auto sent = wire::sendRaw(c.get(), data + 1, size - 1, withNetns ? std::span<const int>(fds) : std::span<const int>());
  if (!sent) {
    c.reset();
    return 0;
  }
  // Every request gets exactly one reply: an object with a boolean "ok", within the longest dial.
  if (!wire::waitReadable(c.get(), std::chrono::seconds(12))) __builtin_trap();
  auto reply = wire::recv(c.get());
  // Events (a name this connection listens on was dialed) come unsolicited: skip them.
  for (int i = 0; i < 16 && reply && reply->body.contains("event"); ++i) {
    if (!wire::waitReadable(c.get(), std::chrono::seconds(12))) __builtin_trap();
    reply = wire::recv(c.get());
  }
  if (!reply) {
    if (reply.error().code != "closed") __builtin_trap();
    c.reset();
    return 0;
  }
  if (!reply->body.contains("ok") || !reply->body["ok"].is_boolean()) __builtin_trap();
  if (!reply->body["ok"].get<bool>()) {
    const auto& err = reply->body["error"];
    if (!err.is_object() || !err["code"].is_string() || !proto::errorCodeFrom(err["code"].get<std::string>())) __builtin_trap();
    if (err["code"] == "internal") __builtin_trap();  // a client's input is never our bug
  }
  return 0;
}
