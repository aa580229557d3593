// Chaining colo-cni into a node's CNI configuration and taking it out again, over the files:
// colo-cni is kept in exactly one file, the one runtimes load (or the one the operator names),
// every file it was ever put in is remembered until it is taken out again, and the primary's
// files come back as they were (bytes, name, mode, owner, links).
#pragma once

#include <string>
#include <vector>

#include "cni_conf.h"
#include "install_state.h"

namespace colo::installer {

struct ChainOptions {
  std::string confDir;
  std::string confFile;  // a file name in confDir to chain into; empty: the one runtimes load
  ojson extra = ojson::object();  // colo-cni's settings (failurePolicy, timeoutMs, ...)
};

struct ChainResult {
  bool chained = false;   // colo-cni is in the chain runtimes use now
  std::string file;       // the file colo-cni is in (or should be in)
  // appended, generated, updated (our entry's settings changed), present (nothing to do),
  // foreign (a colo-cni entry colo did not write: left alone), or none (not chained)
  std::string action = "none";
  bool waiting = false;    // no configuration to chain into yet
  bool unreadable = false; // the file to chain into is not valid JSON (perhaps half-written)
  bool rechained = false;  // colo-cni had been put in this file before and was gone again
  std::string message;     // why not chained, or what the operator should know
  std::string primary;     // the primary's plugin types (for fight advice)
  std::string advice;      // what to do if the primary keeps undoing the edit
};

// Idempotent. Malformed, unsupported or unrecognised files are left untouched, with a message.
// Errors are only for what could not be done on the file system (read-only, permissions).
Expected<ChainResult> chain(const ChainOptions& options);
// Whether colo-cni is in the chain now, without changing anything.
ChainResult inspect(const ChainOptions& options);
// Takes colo-cni out of every file it was put in; the state file goes too.
Status unchain(const std::string& confDir);

}  // namespace colo::installer
