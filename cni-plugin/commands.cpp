#include "commands.h"

#include <sys/stat.h>

#include "colo/common/protocol.h"
#include "colo/common/replies.h"

#include <chrono>

#include "colo/common/netns.h"
#include "colo/common/spool.h"
#include "plugin_log.h"
#include "spec_version.h"

namespace colo::cni {
namespace {

using nlohmann::json;

using Kind = optin::Decision::Kind;

std::string describe(const Context& ctx) {
  std::string s = "container " + ctx.inv.containerId.substr(0, 12);
  if (!ctx.pod.podName.empty()) s += " pod " + ctx.pod.podNamespace + "/" + ctx.pod.podName;
  return s;
}

json podJson(const Context& ctx) {
  return {{"namespace", ctx.pod.podNamespace}, {"name", ctx.pod.podName}, {"uid", ctx.pod.podUid},
          {"infraContainerID", ctx.pod.infraContainerId}};
}

json attachmentJson(const Context& ctx) {
  return {{"network", ctx.config.name}, {"containerID", ctx.inv.containerId}, {"ifname", ctx.inv.ifname}};
}

std::vector<std::string> addressesOf(const json& prevResult) {
  std::vector<std::string> out;
  if (!prevResult.contains("ips") || !prevResult["ips"].is_array()) return out;
  for (const auto& ip : prevResult["ips"]) {
    if (ip.is_object() && ip.contains("address") && ip["address"].is_string()) out.push_back(ip["address"].get<std::string>());
  }
  return out;
}

std::string passThrough(const PluginConfig& c) {
  json out = *c.prevResult;
  out["cniVersion"] = c.cniVersion;
  return out.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

// The agent's reply read through its parser: one that does not parse is a protocol failure,
// handled like any other answer that is not a colo reply.
template <class T>
Expected<T, AgentFailure> typed(Expected<json, AgentFailure> reply, Expected<T> (*parse)(const json&)) {
  if (!reply) return reply.error();
  auto r = parse(*reply);
  if (!r) return AgentFailure{AgentFailure::Kind::Protocol, r.error().code, "colo-node's reply: " + r.error().message};
  return std::move(*r);
}

CniError agentError(const Context& ctx, const AgentFailure& f, Code unavailableCode) {
  const std::string where = "agentSocket " + ctx.config.agentSocket + ": " + f.message;
  switch (f.kind) {
    case AgentFailure::Kind::Rejected:
      return CniError{agentUnavailable(f) ? unavailableCode : cniCodeForAgentError(f.code), "colo-node refused: " + f.message, where};
    case AgentFailure::Kind::Timeout:
      return CniError{unavailableCode, "colo-node did not answer within " + std::to_string(ctx.config.timeout.count()) + " ms", where};
    default:
      return CniError{unavailableCode, "colo-node is not available", where};
  }
}

// failurePolicy in one place, and only for an agent that could not be asked: open logs and lets
// the pod go on without colo; closed fails the verb. A working agent's refusal is never overruled.
Outcome onFailure(const Context& ctx, const char* verb, const AgentFailure& f, std::string okOutput, Code unavailableCode) {
  const CniError e = agentError(ctx, f, unavailableCode);
  if (!agentUnavailable(f)) {
    plog::error(std::string() + verb + " " + describe(ctx) + ": " + e.msg + " (" + e.details + ")");
    return e;
  }
  if (ctx.config.failurePolicy == FailurePolicy::Open) {
    plog::warn(std::string() + verb + " " + describe(ctx) + ": " + e.msg + " (" + e.details + "); continuing without colo (failurePolicy open)");
    return okOutput;
  }
  plog::error(std::string() + verb + " " + describe(ctx) + ": " + e.msg + " (" + e.details + "); failing (failurePolicy closed)");
  return e;
}

Outcome requirePrevResult(const Context& ctx, const char* verb) {
  if (!ctx.config.prevResult) {
    return CniError{Code::InvalidConfig, std::string("colo-cni is a chained plugin: ") + verb + " needs prevResult",
                    "put colo-cni after the primary CNI plugin in the conflist"};
  }
  return std::string();
}

json optInJson(const optin::Decision& d) { return d.kind == Kind::Yes ? json(true) : d.kind == Kind::No ? json(false) : json(nullptr); }

void logBadOptIn(const Context& ctx, const char* verb, const optin::Decision& d) {
  if (d.badValue.empty()) return;
  plog::warn(std::string() + verb + " " + describe(ctx) + ": annotation " + kEnabledAnnotation + " value '" + d.badValue +
             "' is not understood (true/false, 1/0, t/f, TRUE/FALSE, True/False); the pod is not opted in");
}

// What colo-node could not be told is written down, so that it applies it when it starts.
bool spoolIt(const Context& ctx, const char* verb, json req) {
  const std::string dir = ctx.spoolDir.empty() ? spool::dirFor(ctx.config.agentSocket) : ctx.spoolDir;
  req["writtenUnixMs"] = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (auto s = spool::write(dir, req); !s) {
    plog::error(std::string() + verb + " " + describe(ctx) + ": cannot record it for colo-node in " + dir + ": " + s.error().message);
    return false;
  }
  plog::warn(std::string() + verb + " " + describe(ctx) + ": recorded in " + dir + "; colo-node applies it when it starts");
  return true;
}

}  // namespace

// The one mapping lives with the protocol's error codes (colo/common/protocol.h).
Code cniCodeForAgentError(const std::string& agentCode) { return static_cast<Code>(colo::proto::cniCode(agentCode)); }

bool agentUnavailable(const AgentFailure& f) {
  if (f.kind != AgentFailure::Kind::Rejected) return true;
  const auto c = proto::errorCodeFrom(f.code);
  return c == proto::ErrorCode::Unavailable || c == proto::ErrorCode::Timeout;
}

Outcome cmdAdd(const Context& ctx) {
  if (auto r = requirePrevResult(ctx, "ADD"); !r) return r;
  const std::string out = passThrough(ctx.config);
  const optin::Decision d = optInOf(ctx.config);
  logBadOptIn(ctx, "ADD", d);
  // A pod that has not opted in is still reported: in Kubernetes mode the agent holds it dormant so
  // that adding the annotation later turns colo on without restarting the pod. Nothing about
  // such a pod may fail, whatever the failure policy or the agent's answer.
  auto ns = ctx.openNetns(ctx.inv.netns);
  if (!ns) {
    if (d.kind == Kind::No) return out;
    return onFailure(ctx, "ADD", {AgentFailure::Kind::Unreachable, "bad_netns", "cannot open CNI_NETNS: " + ns.error().message}, out,
                     Code::InvalidEnvironment);
  }
  json req = {{"op", "cni.add"}, {"attachment", attachmentJson(ctx)}, {"pod", podJson(ctx)},
              {"netnsPath", ctx.inv.netns}, {"ips", addressesOf(*ctx.config.prevResult)},
              {"annotations", ctx.config.annotations ? *ctx.config.annotations : json(nullptr)},
              {"optIn", optInJson(d)},
              {"enableAll", ctx.config.enableAll},
              {"failurePolicy", ctx.config.failurePolicy == FailurePolicy::Closed ? "closed" : "open"}};
  if (auto id = netns::inspect(ns->get())) {
    req["netnsInode"] = id->inode;  // a spooled ADD is only adopted into this very netns
    req["netnsDevice"] = id->device;
    req["netnsCookie"] = id->cookie;  // 0 (unknown): colo-node will not adopt the record if spooled
  }
  auto reply = typed(ctx.agent(ctx.config)->call(req, ns->get()), proto::parseCniAddReply);
  if (!reply) {
    const auto& f = reply.error();
    if (d.kind == Kind::No) {
      plog::debug("ADD " + describe(ctx) + ": not opted in; colo-node not reached (" + f.message + ")");
      return out;
    }
    // The pod goes on without colo (open): leave the ADD for colo-node to adopt at its start.
    if (agentUnavailable(f) && ctx.config.failurePolicy == FailurePolicy::Open) {
      req.erase("deadlineUnixMs");
      spoolIt(ctx, "ADD", req);
    }
    return onFailure(ctx, "ADD", f, out, Code::TryAgainLater);
  }
  for (const auto& w : reply->warnings) plog::warn("ADD " + describe(ctx) + ": " + w);
  plog::info(std::string() + "ADD " + describe(ctx) + ": colo-node " + (reply->optedIn ? "accepted" : "did not opt in") + " the pod (key " + reply->key + ")");
  return out;
}

// DEL needs nothing but the attachment (container ID, ifname, network): not the netns, not
// prevResult, not CNI_PATH. What colo-node cannot be told now it is told at its next start.
Outcome cmdDel(const Context& ctx) {
  json req = {{"op", "cni.del"}, {"attachment", attachmentJson(ctx)}, {"pod", podJson(ctx)}};
  auto reply = typed(ctx.agent(ctx.config)->call(req, -1), proto::parseCniDelReply);
  if (reply) {
    plog::info(std::string() + "DEL " + describe(ctx) + ": " + (reply->removed ? "removed" : "nothing to remove"));
    return std::string();
  }
  const auto& f = reply.error();
  if (!agentUnavailable(f)) {
    plog::warn("DEL " + describe(ctx) + ": colo-node refused: " + f.message + "; nothing more to undo here");
    return std::string();
  }
  plog::warn("DEL " + describe(ctx) + ": colo-node could not do it: " + f.message + " (" + ctx.config.agentSocket + ")");
  if (spoolIt(ctx, "DEL", req)) return std::string();
  // Neither colo-node nor the spool has it: saying "done" would lose it. Ask the runtime to retry.
  return CniError{Code::TryAgainLater, "colo-node could not release the pod and the release could not be recorded", f.message};
}

Outcome cmdCheck(const Context& ctx) {
  if (auto r = requirePrevResult(ctx, "CHECK"); !r) return r;
  const optin::Decision d = optInOf(ctx.config);
  logBadOptIn(ctx, "CHECK", d);
  if (d.kind == Kind::No) return std::string();  // colo made nothing for this pod: nothing to check
  auto ns = ctx.openNetns(ctx.inv.netns);
  if (!ns) return CniError{Code::InvalidEnvironment, "cannot open CNI_NETNS", ns.error().message};
  json req = {{"op", "cni.check"}, {"attachment", attachmentJson(ctx)}, {"pod", podJson(ctx)},
              {"ips", addressesOf(*ctx.config.prevResult)},
              {"annotations", ctx.config.annotations ? *ctx.config.annotations : json(nullptr)},
              {"optIn", optInJson(d)}, {"enableAll", ctx.config.enableAll}};
  auto reply = typed(ctx.agent(ctx.config)->call(std::move(req), ns->get()), proto::parseCniCheckReply);
  if (!reply) return onFailure(ctx, "CHECK", reply.error(), std::string(), Code::TryAgainLater);
  plog::debug("CHECK " + describe(ctx) + ": " + reply->checked);
  return std::string();
}

Outcome cmdStatus(const Context& ctx) {
  auto reply = typed(ctx.agent(ctx.config)->call({{"op", "cni.status"}}, -1), proto::parseCniStatusReply);
  if (!reply) {
    // Under "open" colo is an accelerator: its absence must not make the node's network NotReady.
    return onFailure(ctx, "STATUS", reply.error(), std::string(), Code::PluginNotAvailable);
  }
  return std::string();
}

Outcome cmdGc(const Context& ctx) {
  if (!ctx.config.validAttachments) {
    // Without the list every attachment would look stale: releasing them would cut running pods off.
    plog::warn("GC network " + ctx.config.name + ": neither cni.dev/valid-attachments nor cni.dev/attachments was given; releasing nothing");
    return std::string();
  }
  json valid = json::array();
  for (const auto& a : *ctx.config.validAttachments) valid.push_back({{"containerID", a.containerId}, {"ifname", a.ifname}});
  auto reply = typed(ctx.agent(ctx.config)->call({{"op", "cni.gc"}, {"network", ctx.config.name}, {"validAttachments", valid}}, -1),
                     proto::parseCniGcReply);
  if (!reply) return onFailure(ctx, "GC", reply.error(), std::string(), Code::TryAgainLater);
  plog::info("GC network " + ctx.config.name + ": colo-node released " + std::to_string(reply->removed.size()) + " stale attachments, " +
             std::to_string(reply->pending.size()) + " still pending");
  return std::string();
}

std::string versionInfo(const std::string& asked) {
  const std::string v = isSupported(asked) ? asked : std::string(kImplementedVersion);
  json out = {{"cniVersion", v}, {"supportedVersions", json::array()}};
  for (auto s : kSupportedVersions) out["supportedVersions"].push_back(std::string(s));
  return out.dump() + "\n";
}

}  // namespace colo::cni
