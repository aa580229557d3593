// colo-cni's network configuration (stdin): parse, then validate, before anything acts on it.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cni_error.h"
#include "colo/common/error.h"
#include "colo/common/opt_in.h"

namespace colo::cni {

enum class FailurePolicy { Open, Closed };

inline constexpr const char* kAnnotationsCapability = "io.kubernetes.cri.pod-annotations";
using optin::kEnabledAnnotation;
inline constexpr int kDefaultTimeoutMs = 500;
inline constexpr int kMaxTimeoutMs = 2000;

struct Attachment {
  std::string containerId;
  std::string ifname;
};

struct PluginConfig {
  std::string cniVersion;
  std::string name;  // the network name
  std::string type;
  std::string agentSocket = "/run/colo/cni.sock";
  FailurePolicy failurePolicy = FailurePolicy::Open;
  std::chrono::milliseconds timeout{kDefaultTimeoutMs};
  bool enableAll = false;
  std::string logFile = "/var/log/colo/colo-cni.log";
  std::string logLevel = "info";

  std::optional<nlohmann::json> prevResult;              // object, as given
  // The pod's colo.dev/ annotations, when the runtime passed the capability (null counts as none:
  // containerd sends null for a pod without annotations). Everything else is dropped here.
  std::optional<nlohmann::json> annotations;
  // GC only: "cni.dev/valid-attachments" (spec 1.1) and "cni.dev/attachments" (libcni 1.2.0 to
  // 1.2.2), together. Neither key: nullopt, and GC releases nothing.
  std::optional<std::vector<Attachment>> validAttachments;
};

// Parses stdin. Not JSON: code 6. Unsupported or missing cniVersion: code 1. A known key of the wrong
// type or out of range: code 7. Unknown keys are ignored, as the spec asks.
Expected<PluginConfig, CniError> parseConfig(const std::string& stdinData);

// Opt-in as colo-node decides it too (common/opt_in.h): annotation, then enableAll, then unknown.
optin::Decision optInOf(const PluginConfig& config);

// The config's cniVersion when stdin is a JSON object with a well-formed "cniVersion" string,
// supported or not: every reply, errors included, is written in it. Empty otherwise.
std::string peekVersion(const std::string& stdinData);

}  // namespace colo::cni
