// colo-cni's side of the hop to colo-node. An interface, so the verb logic is tested without a daemon.
#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "colo/common/error.h"

namespace colo::cni {

struct AgentFailure {
  enum class Kind {
    Unreachable,  // no agent listening (socket missing, refused)
    Timeout,      // agent did not answer in time
    Protocol,     // answered something that is not a colo reply
    Rejected,     // answered ok=false; `code` is the agent's typed error code
  };
  Kind kind = Kind::Unreachable;
  std::string code;
  std::string message;
};

class AgentClient {
 public:
  virtual ~AgentClient() = default;
  // Sends `request` (op and fields; envelope added here) with an optional descriptor; returns the reply body.
  virtual Expected<nlohmann::json, AgentFailure> call(nlohmann::json request, int fd) = 0;
};

// The real client: one SOCK_SEQPACKET connection per call, bounded by `timeout` overall.
std::unique_ptr<AgentClient> makeUnixAgentClient(std::string socketPath, std::chrono::milliseconds timeout);

}  // namespace colo::cni
