#include "pods/cni_handler.h"
#include "pods/cni_fields.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "colo/common/names.h"
#include "colo/common/opt_in.h"
#include "colo/common/replies.h"

namespace colo::node {
namespace {

using namespace cnifields;
using Clock = PodOwner::Clock;

// Cleanup verbs carry no deadline of their own; they must not wait forever on a stuck owner either.
constexpr auto kCleanupBudget = std::chrono::seconds(30);

}  // namespace

CniHandler::CniHandler(Registry& registry, PodLifecycle& lifecycle, Metrics& metrics, netns::Identity hostNetns, CniOptions options)
    : registry_(registry), lifecycle_(lifecycle), metrics_(metrics), hostNetns_(hostNetns), options_(std::move(options)) {
  metrics_.describe("colo_cni_requests_total", "counter", "CNI requests from colo-cni by verb and result.");
  metrics_.describe("colo_cni_api_lookups_total", "counter", "ADDs without annotations decided from the Kubernetes API, by result.");
  metrics_.describe("colo_spool_records_total", "counter", "Spooled ADD/DEL records (written by colo-cni while colo-node was unreachable) applied at start, by op and result.");
}

json CniHandler::handle(wire::Message& msg) {
  const json& req = msg.body;
  const std::string op = req.value("op", std::string());
  // The metric's label: a known verb, or "other" (a caller's made-up op must not add series).
  const bool known = op == "cni.add" || op == "cni.del" || op == "cni.check" || op == "cni.status" || op == "cni.gc";
  const std::string verb = known ? op.substr(4) : "other";
  json reply;
  try {
    // A request whose sender has given up (a hung or slow agent) is not applied late: the runtime
    // has already been told the outcome. DEL and GC only ever clean up, so they always run.
    auto deadline = Clock::now() + kCleanupBudget;
    const bool timed = op == "cni.add" || op == "cni.check";
    if (timed && req.contains("deadlineUnixMs") && req["deadlineUnixMs"].is_number_integer()) {
      const auto left = req["deadlineUnixMs"].get<long long>() - nowUnixMs();
      if (left <= 0) {
        reply = proto::errorReply(req, ErrorCode::Timeout, op + ": arrived " + std::to_string(-left) + " ms after colo-cni stopped waiting; not applied");
        metrics_.add("colo_cni_requests_total", {{"verb", verb}, {"result", "late"}});
        spdlog::warn("{}", reply["error"]["message"].get<std::string>());
        return reply;
      }
      deadline = Clock::now() + std::chrono::milliseconds(left);
    }
    if (op == "cni.add") {
      Pod pod = parseAdd(req);
      lookupMeta(pod, req, deadline);  // slow (the API): on this thread, before the owner's turn
      const bool failOpen = str(req, "failurePolicy", false) != "closed";
      if (!lifecycle_.run(deadline, [&] { reply = applyAdd(req, std::move(pod), msg.fds.empty() ? UniqueFd() : std::move(msg.fds[0]), failOpen); })) {
        reply = proto::errorReply(req, ErrorCode::Timeout, op + ": not applied: colo-node could not get to it before colo-cni's deadline");
      }
    } else if (op == "cni.del" || op == "cni.check" || op == "cni.gc") {
      if (!lifecycle_.run(deadline, [&] { reply = op == "cni.del" ? del(req) : op == "cni.gc" ? gc(req) : check(req, msg); })) {
        reply = proto::errorReply(req, op == "cni.check" ? ErrorCode::Timeout : ErrorCode::Unavailable, op + ": not applied in time; colo-node is busy");
      }
    } else if (op == "cni.status") {
      reply = status(req);
    } else {
      reply = proto::errorReply(req, ErrorCode::UnknownOp, "unknown op " + proto::quoteOp(op) + " on the CNI socket");
    }
  } catch (const BadField& e) {
    reply = proto::errorReply(req, e.code, op + ": " + e.message);
  } catch (const nlohmann::json::exception&) {
    // A field of the wrong type that the parse above let through: the caller's mistake.
    reply = proto::errorReply(req, ErrorCode::BadRequest, op + ": a field of the request has the wrong type");
  } catch (const std::exception& e) {
    spdlog::error("{}: internal error: {}", op, e.what());
    reply = proto::errorReply(req, ErrorCode::Internal, op + ": internal error: " + e.what());
  }
  const bool ok = reply.value("ok", false);
  metrics_.add("colo_cni_requests_total", {{"verb", verb}, {"result", ok ? "ok" : reply["error"].value("code", "error")}});
  if (!ok) spdlog::warn("{} refused: {}", op, reply["error"].value("message", ""));
  return reply;
}

Pod CniHandler::parseAdd(const json& req) {
  const AttachmentRef a = attachment(req);
  const json& podIn = req.contains("pod") ? req["pod"] : json::object();
  Pod pod;
  pod.podNamespace = str(podIn, "namespace", false);
  pod.name = str(podIn, "name", false);
  pod.uid = str(podIn, "uid", false, 64);
  pod.infraContainerId = str(podIn, "infraContainerID", false, 256);
  if (!pod.uid.empty() && !names::isPodUid(pod.uid)) throw BadField{ErrorCode::InvalidArgument, "invalid pod uid '" + pod.uid + "'"};
  pod.network = a.network;
  pod.containerId = a.containerId;
  pod.ifname = a.ifname;
  pod.attachments = {{a.network, a.containerId, a.ifname}};
  pod.netnsPath = str(req, "netnsPath", false, 4096);
  pod.ips = ipList(req);
  pod.key = pod.uid.empty() ? pod.containerId : pod.uid;
  // Opt-in (common/opt_in.h, as colo-cni decides it): the colo.dev/enabled annotation wins, then
  // enableAll. Only colo.dev/ annotations are kept.
  pod.annotations = req.contains("annotations") && req["annotations"].is_object() ? optin::keepColo(req["annotations"]) : json(nullptr);
  // "optIn": true is colo-cni saying enableAll applies (older colo-cni sent only that).
  const bool annotated = pod.annotations.is_object() && pod.annotations.contains(optin::kEnabledAnnotation);
  pod.enableAll = req.value("enableAll", false) == true || (!annotated && req.value("optIn", json(nullptr)) == true);
  return pod;
}

void CniHandler::lookupMeta(Pod& pod, const json& req, Clock::time_point deadline) {
  // A runtime that passes no annotations leaves it to the API (Kubernetes mode), within colo-cni's deadline.
  if (pod.annotations.is_object() || !options_.lookup || pod.name.empty()) return;
  (void)req;
  auto meta = options_.lookup(pod.podNamespace, pod.name, pod.uid, deadline - std::chrono::milliseconds(50));  // time for the reply
  metrics_.add("colo_cni_api_lookups_total", {{"result", meta ? "found" : "unknown"}});
  if (meta && (pod.uid.empty() || meta->uid == pod.uid)) {
    PodLifecycle::merge(pod, *meta);
  } else {
    spdlog::info("cni.add {}: runtime passed no annotations and the API did not answer in time; held dormant until the watch "
                 "delivers the pod", pod.key);
  }
}

json CniHandler::applyAdd(const json& req, Pod pod, UniqueFd netnsFd, bool failOpen) {
  const bool optedIn = lifecycle_.optedIn(pod);
  auto notOptedIn = [&] { return proto::okReply(req, proto::CniAddReply{.optedIn = false, .key = pod.key}); };
  if (!optedIn && !options_.holdDormant) {
    spdlog::info("cni.add {}: pod {}/{} has not opted in; not held", pod.key, pod.podNamespace, pod.name);
    return notOptedIn();
  }
  if (!netnsFd) throw BadField{ErrorCode::BadNetns, "cni.add needs exactly one descriptor: the pod's netns"};
  auto id = netns::inspect(netnsFd.get());
  if (!id) throw BadField{ErrorCode::BadNetns, id.error().message};
  if (*id == hostNetns_) {
    throw BadField{ErrorCode::InvalidArgument, "pod " + pod.key + " shares the node's network namespace (hostNetwork); colo needs a pod network namespace"};
  }
  pod.netns = *id;
  pod.addedAt = nowRfc3339();
  pod.addedUnixMs = nowUnixMs();

  const AttachmentId a = pod.attachments.front();
  if (auto existing = registry_.get(pod.key)) {
    if (existing->netns == pod.netns && existing->containerId == a.containerId && !existing->releasePending &&
        !existing->sameAttachment(a.network, a.containerId, a.ifname)) {
      // Another interface of the same sandbox, in a netns colo already serves (Multus, several
      // networks): the endpoint is shared and stays until the last attachment's DEL.
      existing->attachments.push_back(a);
      if (auto s = registry_.update(*existing); !s) return proto::errorReply(req, ErrorCode::Unavailable, "pod " + pod.key + ": " + s.error().message);
      spdlog::info("cni.add {}: attachment {}/{} shares the endpoint of the pod's netns ({} attachments)", pod.key, a.network, a.ifname,
                   existing->attachments.size());
      return proto::okReply(req, proto::CniAddReply{.optedIn = existing->active, .key = pod.key, .shared = true, .endpoint = existing->endpointDir});
    }
    // A repeated ADD, or a sandbox replaced under the same pod UID: start from a clean slate.
    spdlog::info("cni.add {}: replaces what was held for container {}", pod.key, existing->containerId.substr(0, 12));
    auto r = lifecycle_.release(*existing, "replaced");
    if (!r) return proto::errorReply(req, ErrorCode::Unavailable, "pod " + pod.key + ": " + r.error().message);
    if (r->pending) return proto::errorReply(req, ErrorCode::Unavailable, "pod " + pod.key + ": what colo made for its previous sandbox cannot be removed yet; retry");
  }
  std::vector<std::string> warnings;
  if (auto s = hold(pod, std::move(netnsFd), optedIn, failOpen, warnings); !s) {
    return proto::errorReply(req, proto::codeOf(s.error()), "pod " + pod.key + ": " + s.error().message);
  }
  if (!optedIn) {
    spdlog::info("cni.add {}: pod {}/{} has not opted in; held dormant (netns inode {})", pod.key, pod.podNamespace, pod.name, pod.netns.inode);
    return notOptedIn();
  }
  spdlog::info("cni.add {}: holding pod {}/{} container {} ips [{}] netns inode {} (opt-in by {})", pod.key, pod.podNamespace,
               pod.name, pod.containerId.substr(0, 12), fmt::join(pod.ips, ","), pod.netns.inode, pod.optInSource);
  return proto::okReply(req, proto::CniAddReply{.optedIn = true, .key = pod.key, .endpoint = pod.endpointDir,
                                                .hugepageBytes = pod.hugepageBytes, .warnings = std::move(warnings)});
}

// The one way a pod becomes held: CNI ADD, a spooled ADD, and restore at start.
Status CniHandler::hold(Pod& pod, UniqueFd netnsFd, bool optedIn, bool failOpen, std::vector<std::string>& warnings) {
  pod.active = false;
  if (optedIn) {
    if (auto s = lifecycle_.activate(pod, netnsFd.get(), failOpen, warnings); !s) return s;
  }
  if (auto s = registry_.put(pod, std::move(netnsFd)); !s) {
    lifecycle_.deactivate(pod);
    return proto::error(ErrorCode::Unavailable, s.error().message, s.error().errnum);
  }
  lifecycle_.updateGauges();
  return {};
}

void CniHandler::restore(Pod pod, UniqueFd netnsFd) {
  std::vector<std::string> warnings;
  const bool on = pod.active;  // as it was: the API (when watched) turns it on or off after its list
  if (pod.releasePending) {
    (void)registry_.put(pod, std::move(netnsFd));  // the sweep finishes the release
    return;
  }
  if (auto s = hold(pod, std::move(netnsFd), on, true, warnings); !s) {
    spdlog::error("registry: pod {}: not restored: {}", pod.key, s.error().message);
  }
}

json CniHandler::del(const json& req) {
  const AttachmentRef a = attachment(req);
  auto pod = registry_.findByAttachment(a.network, a.containerId, a.ifname);
  if (!pod) {
    spdlog::debug("cni.del container {}: nothing held", a.containerId);
    return proto::okReply(req, proto::CniDelReply{});
  }
  if (pod->attachments.size() > 1) {
    pod->dropAttachment({a.network, a.containerId, a.ifname});
    if (auto s = registry_.update(*pod); !s) return proto::errorReply(req, ErrorCode::Unavailable, "cni.del " + pod->key + ": " + s.error().message);
    spdlog::info("cni.del {}: attachment {}/{} removed; the endpoint stays for {} more", pod->key, a.network, a.ifname, pod->attachments.size());
    return proto::okReply(req, proto::CniDelReply{.removed = true, .key = pod->key, .shared = true});
  }
  auto rel = lifecycle_.release(*pod, "del");
  if (!rel) return proto::errorReply(req, ErrorCode::Unavailable, "cni.del " + pod->key + ": " + rel.error().message);
  spdlog::info("cni.del {}: released pod {}/{}{}", pod->key, pod->podNamespace, pod->name, rel->pending ? " (undoing it is pending, retried)" : "");
  return proto::okReply(req, proto::CniDelReply{.removed = true, .key = pod->key, .pending = rel->pending});
}

json CniHandler::check(const json& req, wire::Message& msg) {
  const AttachmentRef a = attachment(req);
  auto pod = registry_.findByAttachment(a.network, a.containerId, a.ifname);
  if (!pod) {
    // Not held: right for a pod that has not opted in (standalone holds none of those), decided
    // exactly as ADD decided it.
    Pod probe;
    probe.annotations = req.contains("annotations") && req["annotations"].is_object() ? req["annotations"] : json(nullptr);
    probe.enableAll = req.value("enableAll", false) == true;
    if (!options_.holdDormant && !optin::decide(probe.annotations, probe.enableAll).on()) {
      return proto::okReply(req, proto::CniCheckReply{.checked = "not opted in: nothing held"});
    }
    return proto::errorReply(req, ErrorCode::NotFound, "colo-node holds no pod for container " + a.containerId + " on network " + a.network);
  }
  if (pod->releasePending) return proto::errorReply(req, ErrorCode::NotFound, "pod " + pod->key + " is being released");
  // Every address colo holds must be in prevResult; more (a later plugin in the chain) is fine.
  auto ips = ipList(req);
  std::set<std::string> given(ips.begin(), ips.end());
  for (const auto& held : pod->ips) {
    if (req.contains("ips") && !given.count(held)) return proto::errorReply(req, ErrorCode::InvalidArgument, "pod " + pod->key + " is held with address " + held + ", which prevResult does not have");
  }
  if (msg.fds.size() != 1) throw BadField{ErrorCode::BadNetns, "cni.check needs exactly one descriptor: the pod's netns"};
  auto id = netns::inspect(msg.fds[0].get());
  if (!id) throw BadField{ErrorCode::BadNetns, id.error().message};
  if (!(*id == pod->netns)) {
    return proto::errorReply(req, ErrorCode::InvalidArgument, "pod " + pod->key + " is held with a different network namespace than CNI_NETNS");
  }
  if (!pod->active) return proto::okReply(req, proto::CniCheckReply{pod->key, "held dormant: netns, addresses"});
  if (auto s = lifecycle_.verify(*pod, msg.fds[0].get()); !s) {
    return proto::errorReply(req, proto::codeOf(s.error()) == ErrorCode::InvalidArgument ? ErrorCode::InvalidArgument : ErrorCode::NotFound, "pod " + pod->key + ": " + s.error().message);
  }
  return proto::okReply(req, proto::CniCheckReply{pod->key, "held, netns, addresses, endpoint, colo.sock, hugepages, datapath"});
}

json CniHandler::status(const json& req) {
  return proto::okReply(req, proto::CniStatusReply{true, registry_.size()});
}

json CniHandler::gc(const json& req) {
  const std::string network = str(req, "network", true);
  proto::CniGcReply r;
  if (!req.contains("validAttachments") || !req["validAttachments"].is_array()) {
    // Without the list every attachment would look stale: releasing them would cut running pods off.
    spdlog::warn("cni.gc network {}: no list of valid attachments; releasing nothing", network);
    return proto::okReply(req, r);
  }
  std::set<std::pair<std::string, std::string>> valid;
  for (const auto& v : req["validAttachments"]) valid.insert({str(v, "containerID", true, 256), str(v, "ifname", true, 15)});
  for (auto pod : registry_.list()) {
    std::vector<AttachmentId> stale;
    for (const auto& at : pod.attachments) {
      if (at.network == network && !valid.count({at.containerId, at.ifname})) stale.push_back(at);
    }
    if (stale.empty() && !pod.releasePending) continue;
    if (!pod.releasePending && stale.size() < pod.attachments.size()) {
      for (const auto& at : stale) pod.dropAttachment(at);
      if (auto s = registry_.update(pod); !s) return proto::errorReply(req, ErrorCode::Unavailable, "cni.gc: " + s.error().message);
      continue;
    }
    if (pod.releasePending && stale.empty() && pod.network != network) continue;
    auto rel = lifecycle_.release(pod, "gc");
    if (!rel || rel->pending) {
      r.pending.push_back(pod.key);
      continue;
    }
    r.removed.push_back(pod.key);
    spdlog::info("cni.gc {}: pod {}/{} container {} is not a valid attachment; released", pod.key, pod.podNamespace, pod.name,
                 pod.containerId.substr(0, 12));
  }
  lifecycle_.updateGauges();
  return proto::okReply(req, r);
}

}  // namespace colo::node
