#include "commands.h"

#include "plugin_log.h"

#include "spec_version.h"

namespace colo::cni {
namespace {

using nlohmann::json;

enum class Decision { Yes, No, AskAgent };

// An explicit annotation wins; then enableAll; then, if the runtime passed annotations, the pod is
// known not to have opted in; otherwise only the agent (the API) can tell.
Decision optIn(const PluginConfig& c) {
  if (auto a = annotatedOptIn(c)) return *a ? Decision::Yes : Decision::No;
  if (c.enableAll) return Decision::Yes;
  return c.annotations ? Decision::No : Decision::AskAgent;
}

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

CniError agentError(const Context& ctx, const AgentFailure& f, Code unavailableCode) {
  const std::string where = "agentSocket " + ctx.config.agentSocket + ": " + f.message;
  switch (f.kind) {
    case AgentFailure::Kind::Rejected:
      return CniError{cniCodeForAgentError(f.code), "colo-node refused: " + f.message, where};
    case AgentFailure::Kind::Timeout:
      return CniError{unavailableCode, "colo-node did not answer within " + std::to_string(ctx.config.timeout.count()) + " ms", where};
    default:
      return CniError{unavailableCode, "colo-node is not available", where};
  }
}

// failurePolicy in one place: open logs and lets the pod go on without colo; closed fails the verb.
Outcome onFailure(const Context& ctx, const char* verb, const AgentFailure& f, std::string okOutput, Code unavailableCode) {
  const CniError e = agentError(ctx, f, unavailableCode);
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

}  // namespace

Code cniCodeForAgentError(const std::string& agentCode) {
  if (agentCode == "bad_netns") return Code::InvalidEnvironment;
  if (agentCode == "invalid_argument" || agentCode == "bad_request") return Code::InvalidConfig;
  if (agentCode == "not_found") return Code::UnknownContainer;
  if (agentCode == "unsupported_version") return Code::IncompatibleVersion;
  if (agentCode == "unavailable" || agentCode == "timeout") return Code::TryAgainLater;
  if (agentCode == "too_large") return Code::IoFailure;
  if (agentCode == "resource_exhausted") return Code::TryAgainLater;
  return Code::Internal;
}

Outcome cmdAdd(const Context& ctx) {
  if (auto r = requirePrevResult(ctx, "ADD"); !r) return r;
  const std::string out = passThrough(ctx.config);
  const Decision d = optIn(ctx.config);
  // A pod that has not opted in is still reported: in Kubernetes mode the agent holds it dormant so
  // that adding the annotation later turns colo on without restarting the pod. Nothing about
  // such a pod may fail, whatever the failure policy.
  auto fail = [&](const AgentFailure& f) -> Outcome {
    if (d == Decision::No) {
      plog::debug(std::string() + "ADD " + describe(ctx) + ": not opted in; colo-node not reached (" + f.message + ")");
      return out;
    }
    return onFailure(ctx, "ADD", f, out, Code::TryAgainLater);
  };
  auto ns = ctx.openNetns(ctx.inv.netns);
  if (!ns) return fail({AgentFailure::Kind::Rejected, "bad_netns", "cannot open CNI_NETNS: " + ns.error().message});
  json req = {{"op", "cni.add"}, {"attachment", attachmentJson(ctx)}, {"pod", podJson(ctx)},
              {"netnsPath", ctx.inv.netns}, {"ips", addressesOf(*ctx.config.prevResult)},
              {"annotations", ctx.config.annotations ? *ctx.config.annotations : json(nullptr)},
              {"optIn", d == Decision::Yes ? json(true) : d == Decision::No ? json(false) : json(nullptr)},
              {"enableAll", ctx.config.enableAll},
              {"failurePolicy", ctx.config.failurePolicy == FailurePolicy::Closed ? "closed" : "open"}};
  auto reply = ctx.agent(ctx.config)->call(std::move(req), ns->get());
  if (!reply) return fail(reply.error());
  for (const auto& w : reply->value("warnings", json::array())) plog::warn("ADD " + describe(ctx) + ": " + w.get<std::string>());
  plog::info(std::string() + "ADD " + describe(ctx) + ": colo-node " + (reply->value("optedIn", false) ? "accepted" : "did not opt in") + " the pod (key " + reply->value("key", std::string("-")) + ")");
  return out;
}

Outcome cmdDel(const Context& ctx) {
  json req = {{"op", "cni.del"}, {"attachment", attachmentJson(ctx)}, {"pod", podJson(ctx)}};
  auto reply = ctx.agent(ctx.config)->call(std::move(req), -1);
  if (!reply) {
    // DEL is best effort: nothing must keep a pod from going away.
    plog::warn(std::string() + "DEL " + describe(ctx) + ": " + reply.error().message + " (" + ctx.config.agentSocket + "); nothing more to undo here");
    return std::string();
  }
  plog::info(std::string() + "DEL " + describe(ctx) + ": " + (reply->value("removed", false) ? "removed" : "nothing to remove"));
  return std::string();
}

Outcome cmdCheck(const Context& ctx) {
  if (auto r = requirePrevResult(ctx, "CHECK"); !r) return r;
  if (optIn(ctx.config) == Decision::No) return std::string();
  auto ns = ctx.openNetns(ctx.inv.netns);
  if (!ns) return CniError{Code::InvalidEnvironment, "cannot open CNI_NETNS", ns.error().message};
  json req = {{"op", "cni.check"}, {"attachment", attachmentJson(ctx)}, {"pod", podJson(ctx)},
              {"ips", addressesOf(*ctx.config.prevResult)}};
  auto reply = ctx.agent(ctx.config)->call(std::move(req), ns->get());
  if (!reply) return onFailure(ctx, "CHECK", reply.error(), std::string(), Code::TryAgainLater);
  return std::string();
}

Outcome cmdStatus(const Context& ctx) {
  auto reply = ctx.agent(ctx.config)->call({{"op", "cni.status"}}, -1);
  if (!reply) {
    // Under "open" colo is an accelerator: its absence must not make the node's network NotReady.
    return onFailure(ctx, "STATUS", reply.error(), std::string(), Code::PluginNotAvailable);
  }
  return std::string();
}

Outcome cmdGc(const Context& ctx) {
  json valid = json::array();
  for (const auto& a : ctx.config.validAttachments.value_or(std::vector<Attachment>{})) {
    valid.push_back({{"containerID", a.containerId}, {"ifname", a.ifname}});
  }
  auto reply = ctx.agent(ctx.config)->call({{"op", "cni.gc"}, {"network", ctx.config.name}, {"validAttachments", valid}}, -1);
  if (!reply) return onFailure(ctx, "GC", reply.error(), std::string(), Code::TryAgainLater);
  plog::info(std::string() + "GC network " + ctx.config.name + ": colo-node removed " + std::to_string(reply->value("removed", json::array()).size()) + " stale pods");
  return std::string();
}

std::string versionInfo() {
  json v = {{"cniVersion", std::string(kImplementedVersion)}, {"supportedVersions", json::array()}};
  for (auto s : kSupportedVersions) v["supportedVersions"].push_back(std::string(s));
  return v.dump() + "\n";
}

}  // namespace colo::cni
