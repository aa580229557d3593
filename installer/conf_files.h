// File operations on a node's CNI configuration that keep what the file is: its bytes until we
// mean to change them, its mode, owner and group, and a symbolic link stays a link (the file it
// points to is what changes).
#pragma once

#include <sys/types.h>

#include <string>

#include "colo/common/error.h"

namespace colo::installer {

struct FileMeta {
  unsigned mode = 0644;
  uid_t uid = 0;
  gid_t gid = 0;
};

// The file's attributes, following links.
Expected<FileMeta> statFile(const std::string& path);
// Where the bytes of `path` live: the link's target (followed to the end), or path itself.
std::string resolved(const std::string& path);
// Replaces the contents of `path` (through any link) atomically: a temporary file without a CNI
// extension in the same directory, given `meta`, fsynced, renamed over the real file.
Status replaceKeeping(const std::string& path, const std::string& content, const FileMeta& meta);

}  // namespace colo::installer
