// A pod key (pod UID, or a container ID of up to 256 characters) as a file or directory name.
#pragma once

#include <cstddef>
#include <string>

namespace colo::node {

// `key` itself when it has at most `max` characters, else its first 16 characters, '-' and 24 hex
// digits of its SHA-256: stable across restarts, and never longer than 41 characters.
std::string keyName(const std::string& key, std::size_t max);

}  // namespace colo::node
