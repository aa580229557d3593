// colo-node: the node agent.
#include <signal.h>

#include <cstdio>
#include <spdlog/spdlog.h>

#include "agent.h"
#include "datapath/check_kernel.h"
#include "colo/common/log.h"
#include "install/uninstall_mark.h"

int main(int argc, char** argv) {
  using namespace colo::node;
  auto parsed = parseArgs(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed) {
    std::fprintf(stderr, "colo-node: %s\n%s", parsed.error().message.c_str(), usage().c_str());
    return 2;
  }
  if (parsed->showVersion) {
    std::printf("colo-node %s\n", COLO_VERSION);
    return 0;
  }
  if (parsed->showHelp) {
    std::printf("%s", usage().c_str());
    return 0;
  }
  const Config& config = parsed->config;
  if (parsed->checkKernel) {
    (void)colo::log::setup({.format = config.logFormat, .level = config.logLevel == "info" ? "warn" : config.logLevel, .file = "",
                             .name = "colo-node"});
    return checkKernel(stdout);
  }
  if (parsed->uninstall) {
    if (auto s = Datapath::uninstall(config.bpfPinDir); !s) {
      std::fprintf(stderr, "colo-node uninstall: %s\n", s.error().message.c_str());
      return 1;
    }
    std::printf("colo-node: removed %s (maps, links and the programs they held)\n", config.bpfPinDir.c_str());
    return 0;
  }
  if (auto v = validate(config); !v) {
    std::fprintf(stderr, "colo-node: %s\n", v.error().message.c_str());
    return 2;
  }
  if (parsed->markUninstall) {
    if (config.podNamespace.empty() || config.hookSelector.empty()) {
      std::fprintf(stderr, "colo-node mark-uninstall: --pod-namespace and --hook-selector are required\n%s", usage().c_str());
      return 2;
    }
    (void)colo::log::setup({.format = config.logFormat, .level = config.logLevel, .file = "", .name = "colo-node"});
    auto ep = colo::node::kube::Kubernetes::endpointFrom(config);
    if (!ep) {
      std::fprintf(stderr, "colo-node mark-uninstall: %s\n", ep.error().message.c_str());
      return 1;
    }
    colo::node::kube::ApiClient api(std::move(*ep));
    return markUninstall(api, {config.podNamespace, config.hookSelector, std::chrono::seconds(std::stoi(config.hookTimeoutSeconds))});
  }
  if (parsed->checkConfig) {
    std::printf("colo-node: configuration valid (mode %s, node %s)\n", config.mode.c_str(), config.nodeName.c_str());
    return 0;
  }
  if (auto l = colo::log::setup({.format = config.logFormat, .level = config.logLevel, .file = config.logFile, .name = "colo-node"}); !l) {
    std::fprintf(stderr, "colo-node: %s\n", l.error().message.c_str());
    return 2;
  }

  // Signals are taken synchronously on the main thread; every other thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  Agent agent(config);
  if (auto s = agent.start(); !s) {
    spdlog::critical("cannot start: {}", s.error().message);
    return 1;
  }
  int sig = 0;
  while (sigwait(&set, &sig) == 0 && sig == SIGHUP) spdlog::info("SIGHUP: nothing to reload yet");
  spdlog::info("signal {}: shutting down; pod state stays in {}", sig, config.stateDir);
  agent.shutdown();
  return 0;
}
