// What the installer did to a node's CNI configuration directory, so that uninstall undoes all
// of it: every file colo-cni was ever chained into and not yet taken out of, kept in
// <confDir>/.colo-cni-install.state (no CNI extension: runtimes ignore it).
#pragma once

#include <string>
#include <vector>

#include "colo/common/error.h"

namespace colo::installer {

inline constexpr const char* kStateFile = ".colo-cni-install.state";

struct Entry {
  // "appended": colo-cni's entry was added to the primary's conflist `file`; `original` holds the
  //             primary's bytes from just before, `edited` the bytes colo wrote.
  // "generated": `file` (X.colo.conflist) is colo's own, made from the primary's single-plugin
  //              `source` (X.conf or X.json), which colo never touches.
  std::string kind;
  std::string file;
  std::string source;
  std::string original;
  std::string edited;
};

struct State {
  std::vector<Entry> entries;
  Entry* find(const std::string& file);
  void erase(const std::string& file);
};

// A missing file is an empty state. The first installer's one-record format is read too.
Expected<State> loadState(const std::string& confDir);
// Durable and atomic; an empty state removes the file.
Status saveState(const std::string& confDir, const State& state);

}  // namespace colo::installer
