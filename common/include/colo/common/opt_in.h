// Whether colo is on for a pod: decided here, once, for colo-cni and colo-node alike.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace colo::optin {

inline constexpr const char* kEnabledAnnotation = "colo.dev/enabled";
// Annotations and labels colo reads start with this; everything else a runtime or the API sends
// is dropped on arrival (a pod's annotations may weigh 256 KiB, and colo needs none of them).
inline constexpr std::string_view kPrefix = "colo.dev/";

// Go's strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False; anything else nullopt.
std::optional<bool> parseBool(std::string_view s);

struct Decision {
  enum class Kind { Yes, No, Unknown } kind = Kind::Unknown;
  // Why: "annotation", "enableAll", "no annotation", "annotations unknown".
  std::string source;
  // The colo.dev/enabled value when it was not understood (then kind is No); empty otherwise.
  std::string badValue;
  bool on() const { return kind == Kind::Yes; }
};

// `annotations`: an object of the pod's annotations, or null when nobody said (a runtime that
// passes none and no API). colo.dev/enabled, when present, wins; then enableAll; then known
// annotations without it mean no; unknown annotations stay Unknown (the API may know).
Decision decide(const nlohmann::json& annotations, bool enableAll);

// The colo.dev/ entries of a map (annotations or labels); anything else is dropped. Values are
// kept as they are (a wrong type is reported where it is read). Null stays null; not an object: {}.
nlohmann::json keepColo(const nlohmann::json& map);

}  // namespace colo::optin
