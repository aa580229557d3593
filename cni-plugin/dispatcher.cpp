#include "dispatcher.h"

#include <array>
#include <string_view>

#include "colo/common/netns.h"
#include "plugin_log.h"
#include "spec_version.h"

namespace colo::cni {
namespace {

struct Verb {
  std::string_view name;
  SpecVersion since;  // first spec version that has the verb
  Outcome (*run)(const Context&);
};

// The one table from verb to handler. VERSION needs no config and is answered before this.
constexpr std::array<Verb, 5> kVerbs = {{
    {"ADD", {0, 3, 0}, cmdAdd},
    {"DEL", {0, 3, 0}, cmdDel},
    {"CHECK", {0, 4, 0}, cmdCheck},
    {"STATUS", {1, 1, 0}, cmdStatus},
    {"GC", {1, 1, 0}, cmdGc},
}};

RunResult fail(const CniError& e, const std::string& cniVersion) {
  return RunResult{1, e.toJson(cniVersion.empty() ? std::string(kImplementedVersion) : cniVersion)};
}

}  // namespace

RunResult dispatch(const Getenv& getenv, const std::string& stdinData, const Dependencies& deps) {
  // Every reply, errors included, is in the config's cniVersion whenever it can be read.
  const std::string asked = peekVersion(stdinData);
  try {
    const std::string command = getenv("CNI_COMMAND").value_or("");
    if (command == "VERSION") return RunResult{0, versionInfo(asked)};
    auto inv = readInvocation(getenv);
    if (!inv) {
      // DEL undoes what ADD made for one attachment; a variable that cannot name one leaves
      // nothing this DEL could undo (GC and the agent's sweep clean up the rest).
      if (command == "DEL") {
        if (auto cfg = parseConfig(stdinData); cfg && deps.setupLogging) plog::open(cfg->logFile, *plog::parseLevel(cfg->logLevel));
        plog::warn("DEL: " + inv.error().msg + (inv.error().details.empty() ? "" : " (" + inv.error().details + ")") + "; nothing to undo");
        return RunResult{0, ""};
      }
      return fail(inv.error(), asked);
    }

    auto config = parseConfig(stdinData);
    if (!config) return fail(config.error(), asked);
    const std::string& version = config->cniVersion;
    if (deps.setupLogging) plog::open(config->logFile, *plog::parseLevel(config->logLevel));

    const Verb* verb = nullptr;
    for (const auto& v : kVerbs) {
      if (v.name == inv->command) verb = &v;
    }
    if (verb == nullptr) return fail({Code::InvalidEnvironment, "unknown CNI_COMMAND: " + inv->command, ""}, version);
    if (*parseVersion(version) < verb->since) {
      return fail({Code::IncompatibleVersion, "config version " + version + " does not allow " + inv->command, ""}, version);
    }

    auto pod = parseCniArgs(inv->args);
    if (!pod) {
      // DEL must succeed when there is nothing it can undo; bad CNI_ARGS cannot name anything.
      if (inv->command == "DEL") {
        plog::warn("DEL container " + inv->containerId + ": " + pod.error().msg + " (" + pod.error().details + "); ignoring");
        return RunResult{0, ""};
      }
      return fail(pod.error(), version);
    }

    const Context ctx{*inv, *config, *pod, deps.agent, deps.openNetns, deps.spoolDir};
    auto out = verb->run(ctx);
    if (!out) return fail(out.error(), version);
    return RunResult{0, std::move(out.value())};
  } catch (const std::exception& e) {
    return fail({Code::Internal, "colo-cni internal error", e.what()}, asked);
  }
}

Dependencies realDependencies() {
  return Dependencies{
      [](const PluginConfig& c) { return makeUnixAgentClient(c.agentSocket, c.timeout); },
      [](const std::string& path) { return netns::open(path); },
      {},  // beside each config's agentSocket
      true,
  };
}

}  // namespace colo::cni
