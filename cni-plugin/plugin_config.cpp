#include "plugin_config.h"

#include "plugin_log.h"
#include "spec_version.h"

namespace colo::cni {
namespace {

using nlohmann::json;

CniError invalid(const std::string& msg, const std::string& details = "") {
  return CniError{Code::InvalidConfig, msg, details};
}

std::optional<CniError> readString(const json& j, const char* key, std::string& out) {
  if (!j.contains(key)) return std::nullopt;
  if (!j[key].is_string()) return invalid(std::string("'") + key + "' must be a string", j[key].dump());
  out = j[key].get<std::string>();
  return std::nullopt;
}

std::optional<CniError> readAttachments(const json& list, const std::string& key, std::vector<Attachment>& out) {
  if (!list.is_array()) return invalid("'" + key + "' must be an array");
  for (const auto& a : list) {
    if (!a.is_object() || !a.contains("containerID") || !a["containerID"].is_string() || !a.contains("ifname") ||
        !a["ifname"].is_string()) {
      return invalid("each entry of '" + key + "' needs string 'containerID' and 'ifname'", a.dump());
    }
    out.push_back({a["containerID"].get<std::string>(), a["ifname"].get<std::string>()});
  }
  return std::nullopt;
}

}  // namespace

Expected<PluginConfig, CniError> parseConfig(const std::string& stdinData) {
  const json j = json::parse(stdinData, nullptr, false);
  if (j.is_discarded()) return CniError{Code::DecodingFailure, "network configuration is not valid JSON", ""};
  if (!j.is_object()) return CniError{Code::DecodingFailure, "network configuration is not a JSON object", ""};

  PluginConfig c;
  if (!j.contains("cniVersion")) {
    return CniError{Code::IncompatibleVersion, "network configuration has no cniVersion", "supported: " + supportedList()};
  }
  if (auto e = readString(j, "cniVersion", c.cniVersion)) return *e;
  if (!isSupported(c.cniVersion)) {
    return CniError{Code::IncompatibleVersion, "incompatible CNI versions: config is \"" + c.cniVersion + "\"",
                    "supported: " + supportedList()};
  }
  if (auto e = readString(j, "name", c.name)) return *e;
  if (auto e = readString(j, "type", c.type)) return *e;
  if (c.name.empty()) return invalid("network configuration has no 'name'");
  if (auto e = readString(j, "agentSocket", c.agentSocket)) return *e;
  if (c.agentSocket.empty()) return invalid("'agentSocket' must not be empty");
  if (auto e = readString(j, "logFile", c.logFile)) return *e;
  if (auto e = readString(j, "logLevel", c.logLevel)) return *e;
  if (!plog::parseLevel(c.logLevel)) return invalid("'logLevel' must be one of debug, info, warn, error, off", c.logLevel);

  if (j.contains("failurePolicy")) {
    std::string p;
    if (auto e = readString(j, "failurePolicy", p)) return *e;
    if (p == "open") c.failurePolicy = FailurePolicy::Open;
    else if (p == "closed") c.failurePolicy = FailurePolicy::Closed;
    else return invalid("'failurePolicy' must be \"open\" or \"closed\"", p);
  }
  if (j.contains("timeoutMs")) {
    const json& t = j["timeoutMs"];
    if (!t.is_number_integer()) return invalid("'timeoutMs' must be an integer", t.dump());
    const auto ms = t.get<long long>();
    if (ms < 1 || ms > kMaxTimeoutMs) return invalid("'timeoutMs' must be between 1 and 2000", t.dump());
    c.timeout = std::chrono::milliseconds(ms);
  }
  if (j.contains("enableAll")) {
    if (!j["enableAll"].is_boolean()) return invalid("'enableAll' must be a boolean", j["enableAll"].dump());
    c.enableAll = j["enableAll"].get<bool>();
  }
  if (j.contains("prevResult") && !j["prevResult"].is_null()) {
    if (!j["prevResult"].is_object()) return CniError{Code::DecodingFailure, "'prevResult' must be an object", ""};
    c.prevResult = j["prevResult"];
  }
  if (j.contains("runtimeConfig") && !j["runtimeConfig"].is_null()) {
    const json& rc = j["runtimeConfig"];
    if (!rc.is_object()) return invalid("'runtimeConfig' must be an object");
    if (rc.contains(kAnnotationsCapability)) {
      // null: the runtime has the capability and the pod has no annotations (containerd).
      const json& a = rc[kAnnotationsCapability];
      if (!a.is_null() && !a.is_object()) return invalid(std::string("runtimeConfig '") + kAnnotationsCapability + "' must be an object");
      c.annotations = optin::keepColo(a.is_null() ? json::object() : a);
    }
  }
  for (const char* key : {"cni.dev/valid-attachments", "cni.dev/attachments"}) {
    if (!j.contains(key)) continue;
    std::vector<Attachment> list;
    if (auto e = readAttachments(j[key], key, list)) return *e;
    if (!c.validAttachments) c.validAttachments.emplace();
    c.validAttachments->insert(c.validAttachments->end(), list.begin(), list.end());
  }
  return c;
}

std::string peekVersion(const std::string& stdinData) {
  const json j = json::parse(stdinData, nullptr, false);
  if (!j.is_object() || !j.contains("cniVersion") || !j["cniVersion"].is_string()) return {};
  auto v = j["cniVersion"].get<std::string>();
  return parseVersion(v) ? v : std::string();
}

optin::Decision optInOf(const PluginConfig& config) {
  return optin::decide(config.annotations ? *config.annotations : json(nullptr), config.enableAll);
}

}  // namespace colo::cni
