#include "endpoints/pod_api.h"

#include <spdlog/spdlog.h>

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "colo/common/netns.h"
#include "colo/common/replies.h"

namespace colo::node {

using nlohmann::json;

PodApi::PodApi(const Config& config, Registry& registry, Metrics& metrics)
    : config_(config), registry_(registry), metrics_(metrics), broker_(registry, metrics) {
  metrics_.describe("colo_pod_requests_total", "counter", "Requests from pods on their endpoints, by op and result.");
}

// The netns of the process that connected, bound to that process (its pidfd), not to a PID that
// may have been reused by the time we look.
Expected<UniqueFd> PodApi::peerNetnsFd(const ConnInfo& conn) {
  if (conn.pidfd < 0) {
    return Error::make("permission_denied",
                       "this kernel does not name the connecting process (SO_PEERPIDFD, Linux 6.5+): colo.sock cannot tell a pod from a "
                       "host user; use @colo");
  }
  // Linux 6.11+: the namespace straight from the pidfd.
  UniqueFd ns(::ioctl(conn.pidfd, kPidfdGetNetNamespace, 0));
  if (ns) return ns;
  if (errno == ESRCH) return proto::error(proto::ErrorCode::PermissionDenied, "the connecting process has exited");
  // Older: read /proc/<pid>/ns/net, then prove the pid was still that process when we read it
  // (a pidfd keeps its process's pid from being reused while the process lives).
  if (conn.cred.pid <= 0) return proto::error(proto::ErrorCode::PermissionDenied, "caller's pid is not visible to colo-node (run it in the host PID namespace)");
  auto fd = netns::open("/proc/" + std::to_string(conn.cred.pid) + "/ns/net");
  if (!fd) return proto::error(proto::ErrorCode::PermissionDenied, "cannot check the caller's network namespace: " + fd.error().message);
  if (::syscall(SYS_pidfd_send_signal, conn.pidfd, 0, nullptr, 0) != 0) {
    return proto::error(proto::ErrorCode::PermissionDenied, "the connecting process exited while colo-node checked it");
  }
  return std::move(*fd);
}

Expected<netns::Identity> PodApi::peerNetns(const ConnInfo& conn) {
  auto ns = peerNetnsFd(conn);
  if (!ns) return ns.error();
  return netns::inspect(ns->get());
}

Status PodApi::admit(const ConnInfo& conn) const {
  if (conn.listener.empty() || conn.listener[0] != '/') return {};  // abstract: only the pod's netns can reach it
  auto pod = registry_.get(conn.tag);
  if (!pod) return proto::error(proto::ErrorCode::NotFound, "this endpoint's pod is gone");
  auto ns = peerNetnsFd(conn);
  if (!ns) return proto::error(proto::ErrorCode::PermissionDenied, ns.error().message, ns.error().errnum);
  const auto notThePod = [&] {
    return proto::error(proto::ErrorCode::PermissionDenied, "caller (pid " + std::to_string(conn.cred.pid) + ") is not in pod " + pod->key + "'s network namespace");
  };
  // Cheap first: a namespace with another inode is another namespace (a host user's flood is
  // refused here). Only a match needs the cookie (inode numbers are reused), which costs a thread.
  struct stat st{};
  if (::fstat(ns->get(), &st) != 0) return Error::fromErrno("fstat(caller's netns)");
  if (static_cast<std::uint64_t>(st.st_ino) != pod->netns.inode || static_cast<std::uint64_t>(st.st_dev) != pod->netns.device) return notThePod();
  auto id = netns::inspect(ns->get());
  if (!id) return proto::error(proto::ErrorCode::PermissionDenied, id.error().message, id.error().errnum);
  if (!(*id == pod->netns)) return notThePod();
  return {};
}

ServerLimits PodApi::serverLimits() {
  ServerLimits l;
  l.idleTimeout = std::chrono::seconds(120);  // listeners (after `listen`) are exempt: they wait quietly
  l.workers = 4;                              // sockets made in a pod's netns, channel memory
  l.workerShare = 8;                          // queued or running: the jobs are short
  return l;
}

Reply PodApi::handle(wire::Message& msg, const ConnInfo& conn) {
  const json& req = msg.body;
  const std::string op = req.value("op", "");
  Reply reply(nullptr);
  auto pod = registry_.get(conn.tag);
  if (!pod) reply = proto::errorReply(req, proto::ErrorCode::NotFound, "this endpoint's pod is no longer held by colo-node");
  else if (op == "hello") reply = hello(req, *pod, conn);
  else if (op == "listen") reply = broker_.listen(req, *pod, conn);
  else if (op == "dial") reply = broker_.dial(req, *pod, conn);
  else if (op == "channel") reply = broker_.channel(req, *pod, conn);
  else reply = proto::errorReply(req, proto::ErrorCode::UnknownOp, "unknown op " + proto::quoteOp(op) + " (this agent offers: hello, listen, dial, channel)");
  const bool known = op == "hello" || op == "listen" || op == "dial" || op == "channel";
  metrics_.add("colo_pod_requests_total", {{"op", known ? op : "other"}, {"result", !reply.body.is_object() ? "deferred" : reply.body.value("ok", false) ? "ok" : "error"}});
  return reply;
}

json PodApi::hello(const json& req, const Pod& pod, const ConnInfo& conn) const {
  proto::HelloReply r;
  r.identity = {pod.podNamespace, pod.name, pod.uid, pod.key, {}};  // no serviceAccount: hello never sent it
  r.node = config_.nodeName;
  r.ips = pod.ips;
  r.peer = {conn.cred.pid, conn.cred.uid, conn.cred.gid, conn.listener};
  r.agent = {COLO_VERSION, proto::kVersion, {std::begin(kAgentCapabilities), std::end(kAgentCapabilities)}};
  if (pod.hugepageBytes) r.hugepages = proto::HelloReply::Hugepages{pod.hugepageBytes, pod.endpointDir + "/hugepages"};
  spdlog::debug("hello from pid {} uid {} via {}: pod {}", conn.cred.pid, conn.cred.uid, conn.listener, pod.key);
  return proto::okReply(req, r);
}

}  // namespace colo::node
