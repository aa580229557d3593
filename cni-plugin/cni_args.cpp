#include "cni_args.h"

#include <map>
#include <string_view>

#include "colo/common/names.h"

namespace colo::cni {
namespace {

CniError bad(const std::string& msg, const std::string& details = "") { return CniError{Code::InvalidEnvironment, msg, details}; }

bool isTrue(std::string v) {
  for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return v == "1" || v == "true";
}

}  // namespace

Expected<PodArgs, CniError> parseCniArgs(const std::string& raw) {
  std::map<std::string, std::string> kv;
  std::string_view rest = raw;
  while (!rest.empty()) {
    const auto semi = rest.find(';');
    const std::string_view pair = rest.substr(0, semi);
    rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
    if (pair.empty()) continue;  // tolerate "a=b;" and ";;"
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0 || pair.find('=', eq + 1) != std::string_view::npos) {
      return bad("CNI_ARGS: invalid pair", std::string(pair));
    }
    kv[std::string(pair.substr(0, eq))] = std::string(pair.substr(eq + 1));
  }

  PodArgs out;
  bool ignoreUnknown = false;
  std::string unknown;
  for (const auto& [k, v] : kv) {
    if (k == "IgnoreUnknown") ignoreUnknown = isTrue(v);
    else if (k == "K8S_POD_NAMESPACE") out.podNamespace = v;
    else if (k == "K8S_POD_NAME") out.podName = v;
    else if (k == "K8S_POD_UID") out.podUid = v;
    else if (k == "K8S_POD_INFRA_CONTAINER_ID") out.infraContainerId = v;
    else if (unknown.empty()) unknown = k;
  }
  if (!unknown.empty() && !ignoreUnknown) return bad("CNI_ARGS: unknown key '" + unknown + "' and IgnoreUnknown is not set");
  if (!out.podUid.empty() && !names::isPodUid(out.podUid)) return bad("CNI_ARGS: K8S_POD_UID is not a valid pod UID", out.podUid);
  if (out.podNamespace.size() > 253 || out.podName.size() > 253) return bad("CNI_ARGS: pod namespace or name longer than 253");
  if (!out.infraContainerId.empty() && !names::isContainerId(out.infraContainerId)) {
    return bad("CNI_ARGS: K8S_POD_INFRA_CONTAINER_ID has invalid characters", out.infraContainerId);
  }
  return out;
}

}  // namespace colo::cni
