#include "install/uninstall_mark.h"

#include <spdlog/spdlog.h>

#include <map>
#include <nlohmann/json.hpp>
#include <thread>

namespace colo::node {

using json = nlohmann::json;

int markUninstall(kube::ApiClient& api, const MarkOptions& o) {
  const std::string base = "/api/v1/namespaces/" + o.ns;
  auto list = api.request("GET", base + "/pods?labelSelector=" + kube::urlEncode(o.selector), "", std::chrono::seconds(10));
  if (!list || list->status != 200) {
    spdlog::error("mark-uninstall: cannot list colo's pods in {} ({}): {}", o.ns, o.selector,
                  list ? "HTTP " + std::to_string(list->status) + " " + list->body.substr(0, 200) : list.error().message);
    return 1;
  }
  const json pods = json::parse(list->body, nullptr, false);
  std::map<std::string, std::string> waiting;  // uid -> name
  std::map<std::string, std::string> owner;    // uid -> its DaemonSet's uid
  if (pods.is_object() && pods.contains("items") && pods["items"].is_array()) {
    for (const auto& p : pods["items"]) {
      const auto& md = p.value("metadata", json::object());
      const std::string uid = md.value("uid", "");
      waiting[uid] = md.value("name", "");
      if (md.contains("ownerReferences") && md["ownerReferences"].is_array()) {
        for (const auto& ref : md["ownerReferences"]) {
          if (ref.is_object() && ref.value("kind", "") == "DaemonSet") owner[uid] = ref.value("uid", "");
        }
      }
    }
  }
  waiting.erase("");
  const std::string at = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  for (const auto& [uid, name] : waiting) {
    json annotations = {{kUninstallAnnotation, "true"}, {kUninstallAtAnnotation, at}};
    if (!owner[uid].empty()) annotations[kUninstallDaemonSetAnnotation] = owner[uid];
    const json patch = {{"metadata", {{"annotations", annotations}}}};
    auto res = api.request("PATCH", base + "/pods/" + name, patch.dump(), std::chrono::seconds(10));
    if (!res || res->status != 200) {
      spdlog::error("mark-uninstall: cannot annotate pod {}/{}: {}", o.ns, name,
                    res ? "HTTP " + std::to_string(res->status) + " " + res->body.substr(0, 200) : res.error().message);
      return 1;
    }
  }
  spdlog::info("mark-uninstall: {} colo pods marked {}=true; waiting for each colo-node to acknowledge", waiting.size(), kUninstallAnnotation);
  const auto deadline = std::chrono::steady_clock::now() + o.timeout;
  while (!waiting.empty() && std::chrono::steady_clock::now() < deadline) {
    auto ev = api.request("GET", base + "/events?fieldSelector=" + kube::urlEncode(std::string("reason=") + kUninstallAckReason), "",
                          std::chrono::seconds(10));
    const json events = ev && ev->status == 200 ? json::parse(ev->body, nullptr, false) : json();
    if (events.is_object() && events.contains("items") && events["items"].is_array()) {
      for (const auto& e : events["items"]) {
        if (e.value("reason", "") != kUninstallAckReason) continue;
        const auto& obj = e.value("involvedObject", json::object());
        if (waiting.erase(obj.value("uid", ""))) spdlog::info("mark-uninstall: colo-node of pod {} acknowledged", obj.value("name", ""));
      }
    }
    if (!waiting.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  for (const auto& [uid, name] : waiting) {
    spdlog::warn("mark-uninstall: pod {}/{} did not acknowledge within {} s; its colo-node will ask the API for its DaemonSet at SIGTERM "
                 "and keep colo on the node if it cannot tell",
                 o.ns, name, o.timeout.count());
  }
  return 0;
}

}  // namespace colo::node
