#include "pods/pod.h"

#include <chrono>
#include <ctime>

#include "colo/common/names.h"
#include "colo/common/opt_in.h"

namespace colo::node {

using nlohmann::json;

json toJson(const Pod& p) {
  return {{"key", p.key},
          {"namespace", p.podNamespace},
          {"name", p.name},
          {"uid", p.uid},
          {"infraContainerID", p.infraContainerId},
          {"network", p.network},
          {"containerID", p.containerId},
          {"ifname", p.ifname},
          {"netnsPath", p.netnsPath},
          {"netnsInode", p.netns.inode},
          {"netnsDevice", p.netns.device},
          {"netnsCookie", p.netns.cookie},
          {"ips", p.ips},
          {"annotations", p.annotations},
          {"enableAll", p.enableAll},
          {"active", p.active},
          {"optInSource", p.optInSource},
          {"addedAt", p.addedAt},
          {"addedUnixMs", p.addedUnixMs},
          {"labels", p.labels},
          {"serviceAccount", p.serviceAccount},
          {"phase", p.phase},
          {"hugepageBytes", p.hugepageBytes},
          {"endpointDir", p.endpointDir},
          {"releasePending", p.releasePending},
          {"undoPending", p.undoPending},
          {"attachments", [&] {
             json a = json::array();
             for (const auto& x : p.attachments) a.push_back({{"network", x.network}, {"containerID", x.containerId}, {"ifname", x.ifname}});
             return a;
           }()}};
}

std::size_t Pod::dropAttachment(const AttachmentId& a) {
  std::erase(attachments, a);
  if (!attachments.empty()) {
    network = attachments.front().network;
    containerId = attachments.front().containerId;
    ifname = attachments.front().ifname;
  }
  return attachments.size();
}

std::optional<Pod> podFromJson(const json& j) {
  try {
    Pod p;
    p.key = j.at("key").get<std::string>();
    if (!names::isSafeKey(p.key)) return std::nullopt;
    p.podNamespace = j.at("namespace").get<std::string>();
    p.name = j.at("name").get<std::string>();
    p.uid = j.at("uid").get<std::string>();
    p.infraContainerId = j.value("infraContainerID", std::string());
    p.network = j.at("network").get<std::string>();
    p.containerId = j.at("containerID").get<std::string>();
    p.ifname = j.at("ifname").get<std::string>();
    p.netnsPath = j.value("netnsPath", std::string());
    p.netns.inode = j.at("netnsInode").get<std::uint64_t>();
    p.netns.device = j.at("netnsDevice").get<std::uint64_t>();
    p.netns.cookie = j.value("netnsCookie", std::uint64_t{0});  // absent: written before cookies
    p.ips = j.at("ips").get<std::vector<std::string>>();
    p.annotations = j.value("annotations", json(nullptr));
    p.enableAll = j.value("enableAll", false);
    p.active = j.value("active", true);
    p.optInSource = j.value("optInSource", std::string());
    p.addedAt = j.value("addedAt", std::string());
    p.addedUnixMs = j.value("addedUnixMs", std::int64_t{0});
    p.labels = j.value("labels", json(nullptr));
    p.serviceAccount = j.value("serviceAccount", std::string());
    p.phase = j.value("phase", std::string());
    p.hugepageBytes = j.value("hugepageBytes", std::uint64_t{0});
    p.endpointDir = j.value("endpointDir", std::string());
    p.releasePending = j.value("releasePending", false);
    p.undoPending = j.value("undoPending", false);
    if (j.contains("attachments") && j["attachments"].is_array()) {
      for (const auto& a : j["attachments"]) {
        p.attachments.push_back({a.at("network").get<std::string>(), a.at("containerID").get<std::string>(), a.at("ifname").get<std::string>()});
      }
    }
    if (p.attachments.empty()) p.attachments.push_back({p.network, p.containerId, p.ifname});
    return p;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

bool wantsColo(const json& annotations, bool enableAll) { return optin::decide(annotations, enableAll).on(); }

std::string annotation(const json& annotations, const char* key) {
  if (!annotations.is_object()) return {};
  auto it = annotations.find(key);
  return it != annotations.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::int64_t nowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string nowRfc3339() {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace colo::node
