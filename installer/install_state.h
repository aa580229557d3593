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
  // "appended": every colo-cni entry colo wrote into `file` (compact JSON, newest last, a few).
  // Ownership is decided by content: a colo-cni entry in the file that is none of these was put
  // there by someone else (a primary following colo's advice) and is never colo's to change.
  std::vector<std::string> written;
  bool wrote(const std::string& entry) const;
  void remember(const std::string& entry);
};

struct State {
  std::vector<Entry> entries;
  // The first installer's backups (X.colo-backup), removed once the state is saved in this format.
  std::vector<std::string> legacyLeftovers;
  Entry* find(const std::string& file);
  void erase(const std::string& file);
};

// A missing file is an empty state. The first installer's one-record format is read too.
Expected<State> loadState(const std::string& confDir);
// Durable and atomic (a temporary name of this process's own); an empty state removes the file.
// Written only when it differs from what is there: an idle --watch never writes. Once saved, the
// first installer's leftovers go.
Status saveState(const std::string& confDir, State& state);

// Two installers on one node (two releases, a surge rollout) take turns: an exclusive flock on
// the configuration directory itself (nothing is left behind), held for one load-edit-save.
class DirLock {
 public:
  static Expected<DirLock> acquire(const std::string& confDir);
  DirLock(DirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  DirLock& operator=(DirLock&&) = delete;
  ~DirLock();

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace colo::installer
