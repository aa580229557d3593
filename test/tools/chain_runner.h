// Runs a CNI network configuration list as a runtime (libcni) would.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "colo/common/error.h"

namespace colo::chain {

struct Request {
  std::string command;      // ADD, DEL, CHECK, GC, STATUS
  std::string containerId;
  std::string netns;
  std::string ifname = "eth0";
  std::string cniArgs;
  std::string cniPath;      // ':'-separated plugin directories
  nlohmann::json capabilityArgs = nlohmann::json::object();  // e.g. {"io.kubernetes.cri.pod-annotations": {...}}
  nlohmann::json prevResult;   // for DEL/CHECK: the cached ADD result (null: none, like containerd's second DEL)
  nlohmann::json validAttachments = nlohmann::json::array();  // for GC
};

struct PluginRun {
  std::string type;
  int exitCode = 0;
  std::string out;
  double millis = 0;
};

struct Outcome {
  bool ok = true;
  nlohmann::json result;        // final result of ADD
  nlohmann::json error;         // the failing plugin's error JSON
  std::vector<PluginRun> runs;
};

Expected<nlohmann::json> loadConflist(const std::string& path);
// Executes one plugin binary with `env` and `input` on stdin; collects stdout and the time taken.
PluginRun exec(const std::string& path, const std::vector<std::string>& env, const std::string& input);
Outcome run(const nlohmann::json& conflist, const Request& request);

}  // namespace colo::chain
