#include "colo/common/quantity.h"

#include <charconv>
#include <limits>
#include <utility>

namespace colo::quantity {

Expected<std::uint64_t> parseBytes(std::string_view s) {
  auto bad = [&](const std::string& why) {
    return Error::make("invalid_argument", "'" + std::string(s) + "' is not a byte quantity (" + why + "; e.g. 64Mi, 1Gi)");
  };
  std::uint64_t value = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, value);
  if (ec == std::errc::result_out_of_range) return bad("too large");
  if (ec != std::errc() || p == s.data()) return bad("no number");
  const std::string_view suffix(p, static_cast<std::size_t>(end - p));
  static const std::pair<std::string_view, std::uint64_t> kSuffixes[] = {
      {"", 1},          {"Ki", 1ULL << 10}, {"Mi", 1ULL << 20}, {"Gi", 1ULL << 30}, {"Ti", 1ULL << 40},
      {"k", 1000ULL},   {"M", 1000000ULL},  {"G", 1000000000ULL}, {"T", 1000000000000ULL},
  };
  for (const auto& [name, mult] : kSuffixes) {
    if (suffix != name) continue;
    if (value > std::numeric_limits<std::uint64_t>::max() / mult) return bad("too large");
    return value * mult;
  }
  return bad("unknown suffix '" + std::string(suffix) + "'");
}

std::string formatBytes(std::uint64_t bytes) {
  static const std::pair<const char*, std::uint64_t> kUnits[] = {{"Ti", 1ULL << 40}, {"Gi", 1ULL << 30}, {"Mi", 1ULL << 20}, {"Ki", 1ULL << 10}};
  for (const auto& [name, mult] : kUnits) {
    if (bytes >= mult && bytes % mult == 0) return std::to_string(bytes / mult) + name;
  }
  return std::to_string(bytes);
}

}  // namespace colo::quantity
