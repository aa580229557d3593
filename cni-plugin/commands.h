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
};

using Outcome = Expected<std::string, CniError>;

Outcome cmdAdd(const Context& ctx);
Outcome cmdDel(const Context& ctx);
Outcome cmdCheck(const Context& ctx);
Outcome cmdStatus(const Context& ctx);
Outcome cmdGc(const Context& ctx);
std::string versionInfo();

// How an agent error code maps onto the spec's numbers (typed errors survive the hop).
Code cniCodeForAgentError(const std::string& agentCode);

}  // namespace colo::cni
