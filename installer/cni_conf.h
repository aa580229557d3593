// Chaining colo-cni into the node's active CNI configuration, and taking it out again.
// Pure JSON transformations, plus the file operations around them (atomic, in the same directory).
#pragma once

#include <chrono>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "colo/common/error.h"

namespace colo::installer {

using ojson = nlohmann::ordered_json;  // keep the primary CNI's key order when rewriting its file

inline constexpr const char* kPluginType = "colo-cni";
inline constexpr const char* kStateFile = ".colo-cni-install.state";  // no CNI extension: runtimes ignore it
inline constexpr const char* kBackupSuffix = ".colo-backup";

// The plugin entry colo appends, with the capability that makes runtimes pass pod annotations.
ojson coloPlugin(const ojson& extra);
bool hasColo(const ojson& conflist);
ojson appendColo(ojson conflist, const ojson& extra);
ojson removeColo(ojson conflist);
// A single-plugin .conf as a conflist whose first plugin is the original.
ojson confToConflist(const ojson& conf);

// The file runtimes load: the lexically first *.conflist, *.conf or *.json (as libcni sorts them).
std::optional<std::string> activeConfig(const std::string& confDir);

// What install did, so that uninstall undoes exactly that.
struct Record {
  std::string action;  // "appended", "converted", "present" (already chained: nothing to undo)
  std::string file;    // the conflist colo-cni is in
  std::string backup;  // converted: the original .conf, renamed
};

// Idempotent. Malformed or unrecognised files are left untouched with an error naming them.
Expected<Record> chain(const std::string& confDir, const ojson& extra);
Status unchain(const std::string& confDir);

// Copies the binary under a temporary name in binDir, then renames it into place.
Status installBinary(const std::string& source, const std::string& binDir);
Status removeBinary(const std::string& binDir);

// Notices the primary CNI undoing our edit again and again.
class FightDetector {
 public:
  FightDetector(int limit, std::chrono::seconds window) : limit_(limit), window_(window) {}
  // Records one re-add at `now`; true when there were `limit` within the window.
  bool reAdded(std::chrono::steady_clock::time_point now);

 private:
  int limit_;
  std::chrono::seconds window_;
  std::deque<std::chrono::steady_clock::time_point> times_;
};

}  // namespace colo::installer
