#include "colo/common/names.h"

#include <algorithm>

namespace colo::names {
namespace {
bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
}  // namespace

bool isPodUid(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) { return alnum(c) || c == '-'; });
}

bool isContainerId(std::string_view s) {
  if (s.empty() || s.size() > 256 || !alnum(s[0])) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
}

bool isIfName(std::string_view s) {
  if (s.empty() || s.size() > 15 || s == "." || s == "..") return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    return c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == '\0';
  });
}

bool isSafeKey(std::string_view s) {
  if (s.empty() || s.size() > 256 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
}

}  // namespace colo::names
