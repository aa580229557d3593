// One handler per CNI verb. Each gets a validated context and returns stdout or a spec error.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "agent_client.h"
#include "cni_args.h"
#include "cni_error.h"
#include "colo/common/unique_fd.h"
#include "invocation.h"
#include "plugin_config.h"

namespace colo::cni {

using AgentFactory = std::function<std::unique_ptr<AgentClient>(const PluginConfig&)>;
using NetnsOpener = std::function<Expected<UniqueFd>(const std::string& path)>;

struct Context {
  const Invocation& inv;
  const PluginConfig& config;
  const PodArgs& pod;
  const AgentFactory& agent;
  const NetnsOpener& openNetns;
  const std::string& spoolDir;  // empty: beside the agent socket
};

using Outcome = Expected<std::string, CniError>;

Outcome cmdAdd(const Context& ctx);
Outcome cmdDel(const Context& ctx);
Outcome cmdCheck(const Context& ctx);
Outcome cmdStatus(const Context& ctx);
Outcome cmdGc(const Context& ctx);
// The VERSION reply, in `asked` when that is a version colo-cni speaks, else in its own.
std::string versionInfo(const std::string& asked = "");

// How an agent error code maps onto the spec's numbers (typed errors survive the hop).
Code cniCodeForAgentError(const std::string& agentCode);
// Whether a failure means the agent could not do its job at all (down, hung, broken): only then
// does failurePolicy decide. A refusal from a working agent is its verdict and stands.
bool agentUnavailable(const AgentFailure& f);

}  // namespace colo::cni
