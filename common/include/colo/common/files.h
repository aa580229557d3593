// Small filesystem helpers with typed errors.
#pragma once

#include <string>

#include "colo/common/error.h"

namespace colo::files {

// Creates `path` and its parents; sets `mode` on the last component (also when it existed).
Status makeDirs(const std::string& path, unsigned mode);

struct WriteOptions {
  bool durable = false;  // fsync before the rename (files on a host disk; /run is tmpfs)
  std::string tmpPath;   // the temporary name; default: beside `path`, ".tmp.<pid>" appended
};

// Writes to a temporary file, then renames it over `path`: readers see old or new, never half.
// The file gets exactly `mode`, whatever the umask.
Status writeAtomic(const std::string& path, const std::string& content, unsigned mode, const WriteOptions& options = {});

Expected<std::string> read(const std::string& path, std::size_t maxBytes = 1 << 20);

}  // namespace colo::files
