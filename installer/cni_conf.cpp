#include "cni_conf.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "colo/common/files.h"

namespace colo::installer {

namespace fs = std::filesystem;

ojson coloPlugin(const ojson& extra) {
  ojson p = {{"type", kPluginType}, {"capabilities", {{"io.kubernetes.cri.pod-annotations", true}}}};
  if (extra.is_object()) {
    for (const auto& [k, v] : extra.items()) {
      if (k != "type" && k != "capabilities") p[k] = v;
    }
  }
  return p;
}

bool hasColo(const ojson& conflist) {
  if (!conflist.contains("plugins") || !conflist["plugins"].is_array()) return false;
  return std::any_of(conflist["plugins"].begin(), conflist["plugins"].end(),
                     [](const ojson& p) { return p.is_object() && p.value("type", "") == kPluginType; });
}

ojson appendColo(ojson conflist, const ojson& extra) {
  if (!hasColo(conflist)) conflist["plugins"].push_back(coloPlugin(extra));
  return conflist;
}

ojson removeColo(ojson conflist) {
  if (!conflist.contains("plugins") || !conflist["plugins"].is_array()) return conflist;
  ojson kept = ojson::array();
  for (const auto& p : conflist["plugins"]) {
    if (!(p.is_object() && p.value("type", "") == kPluginType)) kept.push_back(p);
  }
  conflist["plugins"] = kept;
  return conflist;
}

ojson confToConflist(const ojson& conf) {
  ojson plugin = conf;
  plugin.erase("cniVersion");
  plugin.erase("name");
  return ojson{{"cniVersion", conf.value("cniVersion", "0.3.1")}, {"name", conf.value("name", "")}, {"plugins", ojson::array({plugin})}};
}

std::optional<std::string> activeConfig(const std::string& confDir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(confDir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    const auto ext = e.path().extension().string();
    if (ext == ".conflist" || ext == ".conf" || ext == ".json") names.push_back(e.path().filename().string());
  }
  if (names.empty()) return std::nullopt;
  std::sort(names.begin(), names.end());
  return confDir + "/" + names.front();
}

namespace {

Status writeJson(const std::string& path, const ojson& j) {
  // The temporary name has no CNI extension, so no runtime ever loads a half-written file.
  return files::writeAtomic(path, j.dump(2) + "\n", 0644,
                            {.durable = true, .tmpPath = fs::path(path).parent_path().string() + "/.colo-cni.tmp"});
}

Expected<ojson> readJson(const std::string& path) {
  auto text = files::read(path);
  if (!text) return text.error();
  ojson j = ojson::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error::make("invalid_argument", path + " is not valid JSON; left untouched (fix it or remove it, then colo chains itself)");
  }
  return j;
}

Status saveRecord(const std::string& confDir, const Record& r) {
  return files::writeAtomic(confDir + "/" + kStateFile, ojson{{"action", r.action}, {"file", r.file}, {"backup", r.backup}}.dump(2) + "\n", 0644);
}

}  // namespace

Expected<Record> chain(const std::string& confDir, const ojson& extra) {
  auto active = activeConfig(confDir);
  if (!active) return Error::make("not_found", "no CNI configuration in " + confDir + " yet (the primary CNI writes it); waiting");
  auto j = readJson(*active);
  if (!j) return j.error();
  Record r;
  r.file = *active;
  if (j->contains("plugins")) {
    if (!(*j)["plugins"].is_array()) return Error::make("invalid_argument", *active + ": 'plugins' is not an array; left untouched");
    if (hasColo(*j)) {
      // Ours from an earlier run (keep the record), or put there by someone else (nothing to undo).
      auto prev = files::read(confDir + "/" + kStateFile);
      if (!prev) {
        r.action = "present";
        if (auto s = saveRecord(confDir, r); !s) return s.error();
      }
      return Record{"present", *active, ""};
    }
    // Keep the primary's bytes: if nobody else touched the file by uninstall, it gets them back exactly.
    r.backup = *active + kBackupSuffix;
    if (auto s = files::writeAtomic(r.backup, *files::read(*active), 0644); !s) return s.error();
    if (auto s = writeJson(*active, appendColo(*j, extra)); !s) {
      ::unlink(r.backup.c_str());
      return s.error();
    }
    r.action = "appended";
  } else {
    if (!j->contains("type")) return Error::make("invalid_argument", *active + " has neither 'plugins' nor 'type'; left untouched");
    // A single .conf becomes a conflist; the .conf is renamed out of the runtimes' sight and kept.
    const std::string conflist = fs::path(*active).replace_extension(".conflist").string();
    if (auto s = writeJson(conflist, appendColo(confToConflist(*j), extra)); !s) return s.error();
    r.backup = *active + kBackupSuffix;
    if (::rename(active->c_str(), r.backup.c_str()) != 0) {
      auto e = Error::fromErrno("rename(" + *active + ")");
      ::unlink(conflist.c_str());
      return e;
    }
    r.file = conflist;
    r.action = "converted";
  }
  if (auto s = saveRecord(confDir, r); !s) return s.error();
  return r;
}

Status unchain(const std::string& confDir) {
  const std::string statePath = confDir + "/" + kStateFile;
  auto text = files::read(statePath);
  if (!text) return {};  // nothing of ours
  ojson st = ojson::parse(*text, nullptr, false);
  const std::string action = st.is_object() ? st.value("action", "") : "";
  const std::string file = st.is_object() ? st.value("file", "") : "";
  if (action == "appended") {
    const std::string backup = st.value("backup", "");
    auto original = backup.empty() ? Expected<ojson>(Error::make("not_found", "")) : readJson(backup);
    if (auto j = readJson(file)) {
      const ojson without = removeColo(*j);
      if (original && without == *original) {
        if (::rename(backup.c_str(), file.c_str()) != 0) return Error::fromErrno("rename(" + backup + ")");
      } else if (auto s = writeJson(file, without); !s) {
        return s;  // the primary rewrote it meanwhile: take out only our entry
      }
    }
    if (!backup.empty()) ::unlink(backup.c_str());
  } else if (action == "converted") {
    const std::string backup = st.value("backup", "");
    if (::rename(backup.c_str(), fs::path(file).replace_extension(".conf").string().c_str()) != 0 && errno != ENOENT) {
      return Error::fromErrno("rename(" + backup + ")");
    }
    ::unlink(file.c_str());
  }
  ::unlink(statePath.c_str());
  return {};
}

Status installBinary(const std::string& source, const std::string& binDir) {
  auto data = files::read(source, 256 << 20);
  if (!data) return data.error();
  // rename replaces the old binary even while a runtime is executing it (the old inode lives on).
  return files::writeAtomic(binDir + "/" + kPluginType, *data, 0755, {.durable = true, .tmpPath = binDir + "/.colo-cni.tmp"});
}

Status removeBinary(const std::string& binDir) {
  if (::unlink((binDir + "/" + kPluginType).c_str()) != 0 && errno != ENOENT) return Error::fromErrno("unlink(colo-cni)");
  return {};
}

bool FightDetector::reAdded(std::chrono::steady_clock::time_point now) {
  times_.push_back(now);
  while (!times_.empty() && now - times_.front() > window_) times_.pop_front();
  return static_cast<int>(times_.size()) >= limit_;
}

}  // namespace colo::installer
