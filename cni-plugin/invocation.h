// The CNI_* environment of one invocation, read through a getenv function so tests need no process env.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "cni_error.h"
#include "colo/common/error.h"

namespace colo::cni {

using Getenv = std::function<std::optional<std::string>(const char*)>;

struct Invocation {
  std::string command;      // ADD, DEL, CHECK, STATUS, GC, VERSION
  std::string containerId;  // ADD, DEL, CHECK
  std::string netns;        // ADD, CHECK (optional for DEL)
  std::string ifname;       // ADD, DEL, CHECK
  std::string args;         // CNI_ARGS, optional
  std::string path;         // CNI_PATH: optional (colo-cni calls no other plugin)
};

// Missing or malformed required variables: code 4. Unknown CNI_COMMAND: code 4. CNI_PATH is
// never required: a chained plugin that calls nothing does not need it.
Expected<Invocation, CniError> readInvocation(const Getenv& getenv);

Getenv processGetenv();

}  // namespace colo::cni
