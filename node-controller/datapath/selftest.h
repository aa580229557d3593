// The datapath's behavioural self-test: spliced sockets between two addresses in a private
// network namespace, checked for what applications rely on. Kernels have regressed on several.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "colo/common/error.h"

namespace colo::node {

struct SelfTestHooks {
  std::function<Status(const std::string& ip)> addPodAddress;
  std::function<void(const std::string& ip)> removePodAddress;
  std::function<std::uint64_t()> redirectedMessages;
};

struct SelfTestResult {
  std::map<std::string, std::string> checks;  // name -> "ok" or why it failed
  bool passed() const;
  std::string failures() const;  // "fionread: ...; poll: ..."
};

// Runs every check on a thread in a fresh netns (needs CAP_SYS_ADMIN and CAP_NET_ADMIN).
SelfTestResult runSelfTest(const SelfTestHooks& hooks);

}  // namespace colo::node
