// The datapath's behavioural self-test: spliced sockets between two addresses in a private
// network namespace, checked for what applications rely on. Kernels have regressed on several.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>

#include "colo/common/error.h"

namespace colo::node {

struct SelfTestHooks {
  std::function<Status(const std::string& ip)> addPodAddress;
  std::function<void(const std::string& ip)> removePodAddress;
  std::function<std::uint64_t()> redirectedMessages;
  // Puts an established socket into the sockhash from user space, as sock_ops would have (for
  // data that arrived before the socket was spliced).
  std::function<Status(int fd)> insertSocket;
  // The guard's count of blocking reads on spliced sockets of this address; empty: no guard
  // loaded (the guard check is then reported as such).
  std::function<std::optional<std::uint64_t>(const std::string& ip)> guardBlockingReads;
};

// The checks that fail only applications with blocking readers (or readers that size their reads
// by FIONREAD alone, read with splice(2), or send or rely on TCP urgent data): a pod declaring
// colo.dev/splice says it has none of those, so these failures do not keep the splice from such
// pods. Names without the _ipv6 suffix.
bool coveredByDeclaration(const std::string& check);
// The guard's own check (not a property of the splice): it decides whether per-pod splice may run.
inline constexpr const char* kGuardCheck = "guard";

struct SelfTestResult {
  std::map<std::string, std::string> checks;  // name -> "ok" or why it failed; IPv6 ones end in _ipv6
  std::map<std::string, std::string> skipped;  // what could not be checked here and why (e.g. "ipv6")
  bool passed() const;
  std::string failures() const;  // "fionread: ...; poll: ..."
  // What the result allows: every splice check passed (Full); only checks a declaration covers
  // failed (PerPod); anything else failed (None). The guard's checks are not counted here.
  enum class Verdict { Full, PerPod, None };
  Verdict verdict() const;
  bool guardPassed() const;  // every guard check ran and passed
  std::string guardFailures() const;
  std::string spliceFailures() const;  // failures(), without the guard's checks
  // The failed splice checks' names ("blocking_read, fionread_normal_path"); IPv6 twins folded
  // into their IPv4 name when `fold`.
  std::string failedNames(bool fold) const;
};

// Runs every check, over IPv4 and IPv6, on a thread in a fresh netns whose loopback it sets up
// through rtnetlink (needs CAP_SYS_ADMIN and CAP_NET_ADMIN).
SelfTestResult runSelfTest(const SelfTestHooks& hooks);

}  // namespace colo::node
