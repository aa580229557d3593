// Validation of names that become paths or keys. Anything a runtime or a pod sends is checked here
// before it touches the filesystem.
#pragma once

#include <string_view>

namespace colo::names {

// Kubernetes pod UID (a UUID in practice); letters, digits and '-', 1..64 chars.
bool isPodUid(std::string_view s);
// Container ID as the CNI spec allows: starts alphanumeric, then [A-Za-z0-9_.-], at most 256 chars.
bool isContainerId(std::string_view s);
// Interface name as the kernel allows: 1..15 chars, no '/', ':', whitespace; not "." or "..".
bool isIfName(std::string_view s);
// A key used as a file name under /run/colo: [A-Za-z0-9_.-], 1..256 chars, not "." or "..".
bool isSafeKey(std::string_view s);

}  // namespace colo::names
