#include "install_state.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "colo/common/files.h"

namespace colo::installer {

using json = nlohmann::json;

Entry* State::find(const std::string& file) {
  auto it = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return e.file == file; });
  return it == entries.end() ? nullptr : &*it;
}

void State::erase(const std::string& file) {
  entries.erase(std::remove_if(entries.begin(), entries.end(), [&](const Entry& e) { return e.file == file; }), entries.end());
}

Expected<State> loadState(const std::string& confDir) {
  const std::string path = confDir + "/" + kStateFile;
  if (::access(path.c_str(), F_OK) != 0) return State{};
  auto text = files::read(path);
  if (!text) return text.error();
  const json j = json::parse(*text, nullptr, false);
  if (!j.is_object()) return Error::make("invalid_argument", path + " is not valid JSON; remove colo-cni from the chain by hand, then delete it");
  State st;
  if (j.contains("entries") && j["entries"].is_array()) {
    for (const auto& e : j["entries"]) {
      if (!e.is_object()) continue;
      st.entries.push_back(Entry{e.value("kind", ""), e.value("file", ""), e.value("source", ""), e.value("original", ""), e.value("edited", "")});
    }
    return st;
  }
  // The first installer's record: {"action": "appended"|"converted"|"present", "file", "backup"}.
  const std::string action = j.value("action", ""), file = j.value("file", ""), backup = j.value("backup", "");
  if (action == "appended" && !backup.empty()) {
    auto original = files::read(backup);
    if (original) st.entries.push_back(Entry{"appended", file, "", *original, ""});
  } else if (action == "converted") {
    // It renamed X.conf to X.conf.colo-backup and wrote X.conflist: put the .conf back now, so
    // that from here on the state is of the current kind.
    const std::string conf = std::filesystem::path(file).replace_extension(".conf").string();
    if (::access(backup.c_str(), F_OK) == 0 && ::access(conf.c_str(), F_OK) != 0 && ::rename(backup.c_str(), conf.c_str()) != 0) {
      return Error::fromErrno("rename(" + backup + ", " + conf + ")");
    }
    st.entries.push_back(Entry{"generated", file, conf, "", ""});
  }
  return st;
}

Status saveState(const std::string& confDir, const State& state) {
  const std::string path = confDir + "/" + kStateFile;
  if (state.entries.empty()) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error::fromErrno("unlink(" + path + ")");
    return {};
  }
  json arr = json::array();
  for (const auto& e : state.entries) {
    arr.push_back({{"kind", e.kind}, {"file", e.file}, {"source", e.source}, {"original", e.original}, {"edited", e.edited}});
  }
  return files::writeAtomic(path, json{{"version", 2}, {"entries", arr}}.dump(2) + "\n", 0600,
                            {.durable = true, .tmpPath = confDir + "/.colo-cni-install.tmp"});
}

}  // namespace colo::installer
