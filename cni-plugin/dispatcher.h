// Parse, validate, act: env and stdin in, exactly one of (result, error JSON) out.
#pragma once

#include <string>

#include "commands.h"

namespace colo::cni {

struct Dependencies {
  AgentFactory agent;
  NetnsOpener openNetns;
  std::string spoolDir;      // empty: spool::dirFor(config.agentSocket)
  bool setupLogging = true;  // off in unit tests
};

struct RunResult {
  int exitCode = 0;
  std::string out;  // written whole to stdout by main
};

RunResult dispatch(const Getenv& getenv, const std::string& stdinData, const Dependencies& deps);

Dependencies realDependencies();

}  // namespace colo::cni
