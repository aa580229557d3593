#include "invocation.h"

#include <cstdlib>
#include <set>

#include "colo/common/names.h"

namespace colo::cni {
namespace {

struct Requirement {
  bool containerId, netns, ifname;
};

// Which variables the spec requires per verb.
std::optional<Requirement> requirementsFor(const std::string& cmd) {
  if (cmd == "ADD" || cmd == "CHECK") return Requirement{true, true, true};
  if (cmd == "DEL") return Requirement{true, false, true};
  if (cmd == "GC" || cmd == "STATUS" || cmd == "VERSION") return Requirement{false, false, false};
  return std::nullopt;
}

}  // namespace

Expected<Invocation, CniError> readInvocation(const Getenv& getenv) {
  auto get = [&](const char* name) { return getenv(name).value_or(""); };
  Invocation inv{get("CNI_COMMAND"), get("CNI_CONTAINERID"), get("CNI_NETNS"), get("CNI_IFNAME"), get("CNI_ARGS"), get("CNI_PATH")};
  if (inv.command.empty()) return CniError{Code::InvalidEnvironment, "required env variable CNI_COMMAND is missing", ""};
  const auto req = requirementsFor(inv.command);
  if (!req) return CniError{Code::InvalidEnvironment, "unknown CNI_COMMAND: " + inv.command, ""};

  auto missing = [](const char* name) { return CniError{Code::InvalidEnvironment, std::string("required env variable ") + name + " is missing", ""}; };
  if (req->containerId && inv.containerId.empty()) return missing("CNI_CONTAINERID");
  if (req->netns && inv.netns.empty()) return missing("CNI_NETNS");
  if (req->ifname && inv.ifname.empty()) return missing("CNI_IFNAME");
  if (!inv.containerId.empty() && !names::isContainerId(inv.containerId)) {
    return CniError{Code::InvalidEnvironment, inv.containerId.size() > 256 ? "CNI_CONTAINERID is longer than 256 characters" : "invalid characters in CNI_CONTAINERID", inv.containerId};
  }
  if (!inv.ifname.empty() && !names::isIfName(inv.ifname)) {
    return CniError{Code::InvalidEnvironment, "invalid CNI_IFNAME", inv.ifname};
  }
  return inv;
}

Getenv processGetenv() {
  return [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

}  // namespace colo::cni
