#include "spec_version.h"

#include <algorithm>
#include <charconv>

namespace colo::cni {

std::optional<SpecVersion> parseVersion(std::string_view s) {
  SpecVersion v;
  int* parts[] = {&v.major, &v.minor, &v.patch};
  const char* p = s.data();
  const char* end = s.data() + s.size();
  for (int i = 0; i < 3; ++i) {
    auto [next, ec] = std::from_chars(p, end, *parts[i]);
    if (ec != std::errc() || next == p || *parts[i] < 0) return std::nullopt;
    p = next;
    if (i < 2) {
      if (p == end || *p != '.') return std::nullopt;
      ++p;
    }
  }
  if (p != end) return std::nullopt;
  return v;
}

bool isSupported(std::string_view s) {
  return std::find(kSupportedVersions.begin(), kSupportedVersions.end(), s) != kSupportedVersions.end();
}

std::string supportedList() {
  std::string out;
  for (auto v : kSupportedVersions) {
    if (!out.empty()) out += ", ";
    out += v;
  }
  return out;
}

}  // namespace colo::cni
