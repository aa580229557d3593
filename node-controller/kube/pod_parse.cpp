#include "kube/pod_parse.h"

#include "colo/common/opt_in.h"

namespace colo::node::kube {

using nlohmann::json;

namespace {
std::string strAt(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}
// Annotations and labels: only the colo.dev/ string entries colo reads are kept (a pod may carry
// 256 KiB of annotations; fifty such pods must not cost the agent 100 MB).
json coloMap(const json& obj, const char* key) {
  json out = json::object();
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_object()) return out;
  const json kept = optin::keepColo(*it);
  for (const auto& [k, v] : kept.items()) {
    if (v.is_string()) out[k] = v;
  }
  return out;
}
}  // namespace

std::optional<PodMeta> podFromApi(const json& obj) {
  if (!obj.is_object() || !obj.contains("metadata") || !obj["metadata"].is_object()) return std::nullopt;
  const json& md = obj["metadata"];
  PodMeta p;
  p.uid = strAt(md, "uid");
  p.name = strAt(md, "name");
  p.podNamespace = strAt(md, "namespace");
  if (p.uid.empty() || p.name.empty() || p.podNamespace.empty()) return std::nullopt;
  p.resourceVersion = strAt(md, "resourceVersion");
  p.annotations = coloMap(md, "annotations");
  p.labels = coloMap(md, "labels");
  p.terminating = md.contains("deletionTimestamp") && !md["deletionTimestamp"].is_null();
  if (auto spec = obj.find("spec"); spec != obj.end() && spec->is_object()) {
    p.nodeName = strAt(*spec, "nodeName");
    p.serviceAccount = strAt(*spec, "serviceAccountName");
    p.hostNetwork = spec->value("hostNetwork", false) == true;
  }
  if (auto status = obj.find("status"); status != obj.end() && status->is_object()) {
    p.phase = strAt(*status, "phase");
    if (auto ips = status->find("podIPs"); ips != status->end() && ips->is_array()) {
      for (const auto& ip : *ips) {
        if (ip.is_object() && ip.contains("ip") && ip["ip"].is_string()) p.ips.push_back(ip["ip"].get<std::string>());
      }
    }
  }
  return p;
}

std::string identify(const json& obj) {
  if (!obj.is_object() || !obj.contains("metadata") || !obj["metadata"].is_object()) return "an object without metadata";
  const json& md = obj["metadata"];
  const std::string ns = strAt(md, "namespace"), name = strAt(md, "name");
  return "pod " + (ns.empty() ? "?" : ns) + "/" + (name.empty() ? "?" : name) + (strAt(md, "uid").empty() ? " (no metadata.uid)" : "");
}

std::string namespacedName(const json& obj) {
  if (!obj.is_object() || !obj.contains("metadata") || !obj["metadata"].is_object()) return {};
  const std::string ns = strAt(obj["metadata"], "namespace"), name = strAt(obj["metadata"], "name");
  return ns.empty() || name.empty() ? std::string() : ns + "/" + name;
}

std::optional<WatchEvent> parseWatchEvent(std::string_view line) {
  auto j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string()) return std::nullopt;
  return WatchEvent{j["type"].get<std::string>(), j.value("object", json(nullptr))};
}

int statusCode(const json& obj) {
  if (!obj.is_object() || obj.value("kind", "") != "Status") return 0;
  auto c = obj.find("code");
  return c != obj.end() && c->is_number_integer() ? c->get<int>() : 0;
}

}  // namespace colo::node::kube
