// Small filesystem helpers with typed errors.
#pragma once

#include <string>

#include "colo/common/error.h"

namespace colo::files {

// Creates `path` and its parents; sets `mode` on the last component (also when it existed).
Status makeDirs(const std::string& path, unsigned mode);

// Writes to a temporary file beside `path`, then renames it over `path`: readers see old or new, never half.
Status writeAtomic(const std::string& path, const std::string& content, unsigned mode);

Expected<std::string> read(const std::string& path, std::size_t maxBytes = 1 << 20);

}  // namespace colo::files
