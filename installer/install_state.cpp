#include "install_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "colo/common/files.h"

namespace colo::installer {

using json = nlohmann::json;

bool Entry::wrote(const std::string& entry) const { return std::find(written.begin(), written.end(), entry) != written.end(); }

void Entry::remember(const std::string& entry) {
  written.erase(std::remove(written.begin(), written.end(), entry), written.end());
  written.push_back(entry);
  if (written.size() > 8) written.erase(written.begin());
}

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
      Entry en{e.value("kind", ""), e.value("file", ""), e.value("source", ""), e.value("original", ""), e.value("edited", ""), {}};
      if (e.contains("written") && e["written"].is_array()) {
        for (const auto& w : e["written"]) {
          if (w.is_string()) en.written.push_back(w.get<std::string>());
        }
      }
      if (en.written.empty() && !en.edited.empty()) {  // version 2 kept only the file it wrote
        const json doc = json::parse(en.edited, nullptr, false);
        if (doc.is_object() && doc.contains("plugins") && doc["plugins"].is_array()) {
          for (const auto& p : doc["plugins"]) {
            if (p.is_object() && p.value("type", "") == "colo-cni") en.written.push_back(p.dump());
          }
        }
      }
      st.entries.push_back(std::move(en));
    }
    return st;
  }
  // The first installer's record: {"action": "appended"|"converted"|"present", "file", "backup"}.
  const std::string action = j.value("action", ""), file = j.value("file", ""), backup = j.value("backup", "");
  if (action == "appended" && !backup.empty()) {
    auto original = files::read(backup);
    if (original) {
      // The entry in the file now is the one it wrote (it managed no other).
      Entry en{"appended", file, "", *original, "", {}};
      if (auto cur = files::read(file)) {
        const json doc = json::parse(*cur, nullptr, false);
        if (doc.is_object() && doc.contains("plugins") && doc["plugins"].is_array()) {
          for (const auto& p : doc["plugins"]) {
            if (p.is_object() && p.value("type", "") == "colo-cni") en.written.push_back(p.dump());  // sorted keys: the canonical form
          }
        }
      }
      st.entries.push_back(std::move(en));
      st.legacyLeftovers.push_back(backup);
    }
  } else if (action == "converted") {
    // It renamed X.conf to X.conf.colo-backup and wrote X.conflist: put the .conf back now, so
    // that from here on the state is of the current kind.
    const std::string conf = std::filesystem::path(file).replace_extension(".conf").string();
    if (::access(backup.c_str(), F_OK) == 0 && ::access(conf.c_str(), F_OK) != 0 && ::rename(backup.c_str(), conf.c_str()) != 0) {
      return Error::fromErrno("rename(" + backup + ", " + conf + ")");
    }
    st.entries.push_back(Entry{"generated", file, conf, "", "", {}});
  }
  return st;
}

namespace {

Status writeState(const std::string& confDir, const State& state) {
  const std::string path = confDir + "/" + kStateFile;
  if (state.entries.empty()) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error::fromErrno("unlink(" + path + ")");
    return {};
  }
  json arr = json::array();
  for (const auto& e : state.entries) {
    arr.push_back({{"kind", e.kind}, {"file", e.file}, {"source", e.source}, {"original", e.original}, {"edited", e.edited}, {"written", e.written}});
  }
  const std::string content = json{{"version", 3}, {"entries", arr}}.dump(2) + "\n";
  if (auto cur = files::read(path); cur && *cur == content) return {};  // unchanged: no write, no wakeup
  // The temporary name is this process's own (files::writeAtomic appends .tmp.<pid>).
  return files::writeAtomic(path, content, 0600, {.durable = true});
}

}  // namespace

Status saveState(const std::string& confDir, State& state) {
  if (auto s = writeState(confDir, state); !s) return s;
  for (const auto& b : state.legacyLeftovers) {
    if (::unlink(b.c_str()) != 0 && errno != ENOENT) return Error::fromErrno("unlink(" + b + ")");
  }
  state.legacyLeftovers.clear();
  return {};
}

Expected<DirLock> DirLock::acquire(const std::string& confDir) {
  const int fd = ::open(confDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error::fromErrno("open(" + confDir + ")");
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    auto e = Error::fromErrno("flock(" + confDir + ")");
    ::close(fd);
    return e;
  }
  return DirLock(fd);
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace colo::installer
