#include "pods/cni_handler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "colo/common/names.h"

namespace colo::node {
namespace {

using json = nlohmann::json;
namespace code = wire::code;

// Thrown inside handlers for a bad field; turned into an invalid_argument reply.
struct BadField {
  std::string code;
  std::string message;
};

std::string str(const json& obj, const char* key, bool required, std::size_t maxLen = 253) {
  if (!obj.is_object() || !obj.contains(key) || obj[key].is_null()) {
    if (required) throw BadField{code::kBadRequest, std::string("missing '") + key + "'"};
    return {};
  }
  if (!obj[key].is_string()) throw BadField{code::kBadRequest, std::string("'") + key + "' must be a string"};
  auto s = obj[key].get<std::string>();
  if (s.size() > maxLen) throw BadField{code::kInvalidArgument, std::string("'") + key + "' is too long"};
  return s;
}

struct AttachmentRef {
  std::string network, containerId, ifname;
};

AttachmentRef attachment(const json& req) {
  if (!req.contains("attachment") || !req["attachment"].is_object()) throw BadField{code::kBadRequest, "missing object 'attachment'"};
  const json& a = req["attachment"];
  AttachmentRef r{str(a, "network", true), str(a, "containerID", true, 256), str(a, "ifname", true, 15)};
  if (r.network.empty()) throw BadField{code::kInvalidArgument, "attachment network is empty"};
  if (!names::isContainerId(r.containerId)) throw BadField{code::kInvalidArgument, "invalid containerID '" + r.containerId + "'"};
  if (!names::isIfName(r.ifname)) throw BadField{code::kInvalidArgument, "invalid ifname '" + r.ifname + "'"};
  return r;
}

std::vector<std::string> ipList(const json& req) {
  std::vector<std::string> out;
  if (!req.contains("ips") || req["ips"].is_null()) return out;
  if (!req["ips"].is_array()) throw BadField{code::kBadRequest, "'ips' must be an array"};
  for (const auto& ip : req["ips"]) {
    if (!ip.is_string() || ip.get<std::string>().size() > 64) throw BadField{code::kBadRequest, "'ips' must hold address strings"};
    out.push_back(ip.get<std::string>());
  }
  return out;
}

}  // namespace

CniHandler::CniHandler(Registry& registry, PodLifecycle& lifecycle, Metrics& metrics, netns::Identity hostNetns, CniOptions options)
    : registry_(registry), lifecycle_(lifecycle), metrics_(metrics), hostNetns_(hostNetns), options_(std::move(options)) {
  metrics_.describe("colo_cni_requests_total", "counter", "CNI requests from colo-cni by verb and result.");
  metrics_.describe("colo_cni_api_lookups_total", "counter", "ADDs without annotations decided from the Kubernetes API, by result.");
}

json CniHandler::handle(wire::Message& msg) {
  const json& req = msg.body;
  const std::string op = req.value("op", std::string());
  const std::string verb = op.substr(4);
  json reply;
  try {
    // A request whose sender has given up (a hung or slow agent) is not applied late: the runtime
    // has already been told the outcome. DEL and GC only ever clean up, so they always run.
    if ((op == "cni.add" || op == "cni.check") && req.contains("deadlineUnixMs") && req["deadlineUnixMs"].is_number_integer()) {
      const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      const auto late = now - req["deadlineUnixMs"].get<long long>();
      if (late > 0) {
        reply = wire::errorReply(req, "timeout", op + ": arrived " + std::to_string(late) + " ms after colo-cni stopped waiting; not applied");
        metrics_.add("colo_cni_requests_total", {{"verb", verb}, {"result", "late"}});
        spdlog::warn("{}", reply["error"]["message"].get<std::string>());
        return reply;
      }
    }
    if (op == "cni.add") reply = add(req, msg);
    else if (op == "cni.del") reply = del(req);
    else if (op == "cni.check") reply = check(req, msg);
    else if (op == "cni.status") reply = status(req);
    else if (op == "cni.gc") reply = gc(req);
    else reply = wire::errorReply(req, code::kUnknownOp, "unknown op '" + op + "'");
  } catch (const BadField& e) {
    reply = wire::errorReply(req, e.code, op + ": " + e.message);
  } catch (const std::exception& e) {
    spdlog::error("{}: internal error: {}", op, e.what());
    reply = wire::errorReply(req, code::kInternal, op + ": internal error: " + e.what());
  }
  const bool ok = reply.value("ok", false);
  metrics_.add("colo_cni_requests_total", {{"verb", verb}, {"result", ok ? "ok" : reply["error"].value("code", "error")}});
  if (!ok) spdlog::warn("{} refused: {}", op, reply["error"].value("message", ""));
  return reply;
}

json CniHandler::add(const json& req, wire::Message& msg) {
  const AttachmentRef a = attachment(req);
  const json& podIn = req.contains("pod") ? req["pod"] : json::object();
  Pod pod;
  pod.podNamespace = str(podIn, "namespace", false);
  pod.name = str(podIn, "name", false);
  pod.uid = str(podIn, "uid", false, 64);
  pod.infraContainerId = str(podIn, "infraContainerID", false, 256);
  if (!pod.uid.empty() && !names::isPodUid(pod.uid)) throw BadField{code::kInvalidArgument, "invalid pod uid '" + pod.uid + "'"};
  pod.network = a.network;
  pod.containerId = a.containerId;
  pod.ifname = a.ifname;
  pod.netnsPath = str(req, "netnsPath", false, 4096);
  pod.ips = ipList(req);
  pod.key = pod.uid.empty() ? pod.containerId : pod.uid;

  // Opt-in: the colo.dev/enabled annotation wins, then colo-cni's enableAll. A runtime that passes
  // no annotations leaves it to the API (Kubernetes mode), within colo-cni's deadline.
  pod.annotations = req.contains("annotations") && req["annotations"].is_object() ? req["annotations"] : json(nullptr);
  const bool annotatedEnable = pod.annotations.is_object() && pod.annotations.contains("colo.dev/enabled");
  pod.enableAll = req.value("enableAll", false) || (!annotatedEnable && req.value("optIn", json(nullptr)) == true);
  if (!pod.annotations.is_object() && options_.lookup && !pod.name.empty()) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
    if (req.contains("deadlineUnixMs") && req["deadlineUnixMs"].is_number_integer()) {
      const auto left = req["deadlineUnixMs"].get<long long>() - nowUnixMs() - 50;  // leave time for the reply
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(0LL, left));
    }
    auto meta = options_.lookup(pod.podNamespace, pod.name, pod.uid, deadline);
    metrics_.add("colo_cni_api_lookups_total", {{"result", meta ? "found" : "unknown"}});
    if (meta && (pod.uid.empty() || meta->uid == pod.uid)) {
      PodLifecycle::merge(pod, *meta);
    } else {
      spdlog::info("cni.add {}: runtime passed no annotations and the API did not answer in time; held dormant until the watch "
                   "delivers the pod", pod.key);
    }
  }
  const bool optedIn = wantsColo(pod);
  auto notOptedIn = [&] {
    json r = wire::okReply(req);
    r["optedIn"] = false;
    r["key"] = pod.key;
    return r;
  };
  if (!optedIn && !options_.holdDormant) {
    spdlog::info("cni.add {}: pod {}/{} has not opted in; not held", pod.key, pod.podNamespace, pod.name);
    return notOptedIn();
  }

  if (msg.fds.size() != 1) throw BadField{code::kBadNetns, "cni.add needs exactly one descriptor: the pod's netns"};
  auto id = netns::inspect(msg.fds[0].get());
  if (!id) throw BadField{code::kBadNetns, id.error().message};
  if (*id == hostNetns_) {
    throw BadField{code::kInvalidArgument, "pod " + pod.key + " shares the node's network namespace (hostNetwork); colo needs a pod network namespace"};
  }
  pod.netns = *id;
  pod.addedAt = nowRfc3339();
  pod.addedUnixMs = nowUnixMs();

  std::lock_guard lock(lifecycle_.mutex());
  if (auto existing = registry_.get(pod.key)) {
    // A repeated ADD, or a sandbox replaced under the same pod UID: start from a clean slate.
    spdlog::info("cni.add {}: replaces what was held for container {}", pod.key, existing->containerId.substr(0, 12));
    lifecycle_.release(*existing);
  }
  const std::string policy = str(req, "failurePolicy", false);
  std::vector<std::string> warnings;
  pod.active = false;
  if (optedIn) {
    if (auto s = lifecycle_.activate(pod, msg.fds[0].get(), policy != "closed", warnings); !s) {
      return wire::errorReply(req, s.error().code, "pod " + pod.key + ": " + s.error().message);
    }
  }
  if (auto s = registry_.put(pod, std::move(msg.fds[0])); !s) {
    lifecycle_.deactivate(pod);
    throw std::runtime_error(s.error().message);
  }
  lifecycle_.updateGauges();
  if (!optedIn) {
    spdlog::info("cni.add {}: pod {}/{} has not opted in; held dormant (netns inode {})", pod.key, pod.podNamespace, pod.name, pod.netns.inode);
    return notOptedIn();
  }
  spdlog::info("cni.add {}: holding pod {}/{} container {} ips [{}] netns inode {} (opt-in by {})", pod.key, pod.podNamespace,
               pod.name, pod.containerId.substr(0, 12), fmt::join(pod.ips, ","), pod.netns.inode, pod.optInSource);
  json r = wire::okReply(req);
  r["optedIn"] = true;
  r["key"] = pod.key;
  r["endpoint"] = pod.endpointDir;
  r["hugepageBytes"] = pod.hugepageBytes;
  if (!warnings.empty()) r["warnings"] = warnings;
  return r;
}

json CniHandler::del(const json& req) {
  const AttachmentRef a = attachment(req);
  json r = wire::okReply(req);
  std::lock_guard lock(lifecycle_.mutex());
  auto pod = registry_.findByAttachment(a.network, a.containerId, a.ifname);
  r["removed"] = false;
  if (pod) {
    lifecycle_.release(*pod);
    lifecycle_.updateGauges();
    r["removed"] = true;
    r["key"] = pod->key;
    spdlog::info("cni.del {}: released pod {}/{}", pod->key, pod->podNamespace, pod->name);
  } else {
    spdlog::debug("cni.del container {}: nothing held", a.containerId);
  }
  return r;
}

json CniHandler::check(const json& req, wire::Message& msg) {
  const AttachmentRef a = attachment(req);
  auto pod = registry_.findByAttachment(a.network, a.containerId, a.ifname);
  if (!pod) return wire::errorReply(req, code::kNotFound, "colo-node holds no pod for container " + a.containerId + " on network " + a.network);
  if (!msg.fds.empty()) {
    auto id = netns::inspect(msg.fds[0].get());
    if (!id) throw BadField{code::kBadNetns, id.error().message};
    if (!(*id == pod->netns)) {
      return wire::errorReply(req, code::kInvalidArgument, "pod " + pod->key + " is held with a different network namespace than CNI_NETNS");
    }
  }
  auto ips = ipList(req);
  if (!ips.empty() && !pod->ips.empty()) {
    std::set<std::string> want(ips.begin(), ips.end()), have(pod->ips.begin(), pod->ips.end());
    if (want != have) return wire::errorReply(req, code::kInvalidArgument, "pod " + pod->key + " is held with other addresses than prevResult");
  }
  json r = wire::okReply(req);
  r["key"] = pod->key;
  return r;
}

json CniHandler::status(const json& req) {
  json r = wire::okReply(req);
  r["ready"] = true;
  r["pods"] = registry_.size();
  return r;
}

json CniHandler::gc(const json& req) {
  const std::string network = str(req, "network", true);
  if (!req.contains("validAttachments") || !req["validAttachments"].is_array()) throw BadField{code::kBadRequest, "missing array 'validAttachments'"};
  std::set<std::pair<std::string, std::string>> valid;
  for (const auto& v : req["validAttachments"]) {
    valid.insert({str(v, "containerID", true, 256), str(v, "ifname", true, 15)});
  }
  json removed = json::array();
  std::lock_guard lock(lifecycle_.mutex());
  for (const auto& pod : registry_.list()) {
    if (pod.network != network || valid.count({pod.containerId, pod.ifname})) continue;
    lifecycle_.release(pod);
    removed.push_back(pod.key);
    spdlog::info("cni.gc {}: pod {}/{} container {} is not a valid attachment; released", pod.key, pod.podNamespace, pod.name,
                 pod.containerId.substr(0, 12));
  }
  lifecycle_.updateGauges();
  json r = wire::okReply(req);
  r["removed"] = removed;
  return r;
}

}  // namespace colo::node
