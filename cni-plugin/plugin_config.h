// colo-cni's network configuration (stdin): parse, then validate, before anything acts on it.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cni_error.h"
#include "colo/common/error.h"

namespace colo::cni {

enum class FailurePolicy { Open, Closed };

inline constexpr const char* kAnnotationsCapability = "io.kubernetes.cri.pod-annotations";
inline constexpr const char* kEnabledAnnotation = "colo.dev/enabled";
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
  std::optional<nlohmann::json> annotations;             // object of strings, when the runtime passed them
  std::optional<std::vector<Attachment>> validAttachments;  // GC only
};

// Parses stdin. Not JSON: code 6. Unsupported or missing cniVersion: code 1. A known key of the wrong
// type or out of range: code 7. Unknown keys are ignored, as the spec asks.
Expected<PluginConfig, CniError> parseConfig(const std::string& stdinData);

// What the pod's annotations say about opting in: true/false when known, nullopt when the runtime
// passed no annotations or the pod does not carry the annotation.
std::optional<bool> annotatedOptIn(const PluginConfig& config);

}  // namespace colo::cni
