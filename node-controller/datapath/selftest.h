// The datapath's behavioural self-test: spliced sockets between two addresses in a private
// network namespace, checked for what applications rely on. Kernels have regressed on several.
#pragma once

#include <cstdint>
#include <functional>
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
  std::map<std::string, std::string> checks;  // name -> "ok" or why it failed; IPv6 ones end in _ipv6
  std::map<std::string, std::string> skipped;  // what could not be checked here and why (e.g. "ipv6")
  bool passed() const;
  std::string failures() const;  // "fionread: ...; poll: ..."
};

// Runs every check, over IPv4 and IPv6, on a thread in a fresh netns whose loopback it sets up
// through rtnetlink (needs CAP_SYS_ADMIN and CAP_NET_ADMIN).
SelfTestResult runSelfTest(const SelfTestHooks& hooks);

}  // namespace colo::node
