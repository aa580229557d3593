// The parts of a core/v1 Pod (and a watch event) that colo uses, from the API's JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "pods/pod_meta.h"

namespace colo::node::kube {

// nullopt when the object is not a pod with a uid, name and namespace.
std::optional<PodMeta> podFromApi(const nlohmann::json& obj);

struct WatchEvent {
  std::string type;  // ADDED MODIFIED DELETED BOOKMARK ERROR
  nlohmann::json object;
};
// For logs: "pod ns/name", and whether it lacks a uid, of an object podFromApi refused.
std::string identify(const nlohmann::json& obj);
// "ns/name" of an object, or "" when it does not say.
std::string namespacedName(const nlohmann::json& obj);

// nullopt for a line that is not a watch event.
std::optional<WatchEvent> parseWatchEvent(std::string_view line);

// The code of a metav1.Status (410 for Expired), 0 when it is not one.
int statusCode(const nlohmann::json& obj);

}  // namespace colo::node::kube
