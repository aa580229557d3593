#include "colo/common/opt_in.h"

namespace colo::optin {

std::optional<bool> parseBool(std::string_view s) {
  if (s == "1" || s == "t" || s == "T" || s == "TRUE" || s == "true" || s == "True") return true;
  if (s == "0" || s == "f" || s == "F" || s == "FALSE" || s == "false" || s == "False") return false;
  return std::nullopt;
}

Decision decide(const nlohmann::json& annotations, bool enableAll) {
  using Kind = Decision::Kind;
  if (annotations.is_object()) {
    if (annotations.contains(kEnabledAnnotation)) {
      const nlohmann::json& v = annotations.at(kEnabledAnnotation);
      const bool isString = v.is_string();
      const std::string raw = isString ? v.get<std::string>() : v.dump();
      if (auto b = isString ? parseBool(raw) : std::nullopt) return {*b ? Kind::Yes : Kind::No, "annotation", {}};
      return {Kind::No, "annotation", raw.substr(0, 64)};
    }
  }
  if (enableAll) return {Kind::Yes, "enableAll", {}};
  if (annotations.is_object()) return {Kind::No, "no annotation", {}};
  return {Kind::Unknown, "annotations unknown", {}};
}

nlohmann::json keepColo(const nlohmann::json& map) {
  if (map.is_null()) return nullptr;
  nlohmann::json out = nlohmann::json::object();
  if (!map.is_object()) return out;
  for (const auto& [k, v] : map.items()) {
    if (std::string_view(k).substr(0, kPrefix.size()) == kPrefix) out[k] = v;
  }
  return out;
}

}  // namespace colo::optin
