// CNI spec versions colo-cni speaks, and which verb each brought.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace colo::cni {

inline constexpr std::array<std::string_view, 5> kSupportedVersions = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
inline constexpr std::string_view kImplementedVersion = "1.1.0";

struct SpecVersion {
  int major = 0, minor = 0, patch = 0;
  auto operator<=>(const SpecVersion&) const = default;
};

// Parses "X.Y.Z" strictly; nullopt for anything else.
std::optional<SpecVersion> parseVersion(std::string_view s);
bool isSupported(std::string_view s);
std::string supportedList();  // "0.3.0, 0.3.1, ..."

}  // namespace colo::cni
