#include "colo/common/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "colo/common/files.h"
#include "colo/common/unique_fd.h"

namespace colo::spool {

namespace fs = std::filesystem;

std::string dirFor(const std::string& cniSocket) {
  const auto parent = fs::path(cniSocket).parent_path().string();
  return (parent.empty() ? std::string(".") : parent) + "/spool";
}

Status write(const std::string& dir, const nlohmann::json& body) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Error::fromErrno("mkdir(" + dir + ")");
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  char name[64];
  std::snprintf(name, sizeof(name), "%020lld-%d.json", static_cast<long long>(ns), static_cast<int>(::getpid()));
  const std::string path = dir + "/" + name;
  files::WriteOptions o;
  o.durable = true;
  o.tmpPath = dir + "/.tmp." + name;  // not *.json: a reader never takes a half-written record
  if (auto s = files::writeAtomic(path, body.dump() + "\n", 0600, o); !s) return s;
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d) ::fsync(d.get());  // the rename itself survives a crash
  return {};
}

std::vector<Record> readAll(const std::string& dir, std::vector<std::string>& problems) {
  std::vector<Record> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string path = entry.path().string();
    const std::string name = entry.path().filename().string();
    if (name.rfind(".tmp.", 0) == 0) {
      ::unlink(path.c_str());
      continue;
    }
    if (entry.path().extension() != ".json") continue;
    auto text = files::read(path, 1 << 20);
    nlohmann::json j = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
    if (!j.is_object() || !j.contains("op") || !j["op"].is_string()) {
      problems.push_back(path + ": not a spool record; moved aside to " + path + ".bad");
      fs::rename(path, path + ".bad", ec);
      continue;
    }
    out.push_back({path, std::move(j)});
  }
  std::sort(out.begin(), out.end(), [](const Record& a, const Record& b) { return a.path < b.path; });
  return out;
}

}  // namespace colo::spool
