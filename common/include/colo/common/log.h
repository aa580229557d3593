// Logging set-up shared by colo-node and colo-cni: text or JSON lines, to stderr or a file.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

#include "colo/common/error.h"

namespace colo::log {

struct Options {
  std::string format = "text";  // "text" or "json"
  std::string level = "info";   // trace, debug, info, warn, error, off
  std::string file;             // empty: stderr
  std::string name = "colo";
};

Status validate(const Options& options);

// Installs the default logger. Never throws; a file that cannot be opened leaves logging off
// (colo-cni must never print anything but its result).
Status setup(const Options& options);

}  // namespace colo::log
