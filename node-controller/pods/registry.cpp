#include "pods/registry.h"

#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "colo/common/files.h"
#include "colo/common/names.h"
#include "pods/key_name.h"

namespace colo::node {

namespace fs = std::filesystem;

Registry::Registry(std::string stateDir) : dir_(std::move(stateDir) + "/pods") {}

// A container ID may have 256 characters, and "<key>.json.tmp.<pid>" must fit NAME_MAX (255).
std::string Registry::fileFor(const std::string& key) const { return dir_ + "/" + keyName(key, kMaxPlainKey) + ".json"; }

Expected<std::size_t> Registry::load() {
  if (auto s = files::makeDirs(dir_, 0700); !s) return s.error();
  std::lock_guard lock(mu_);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string path = entry.path().string();
    if (entry.path().extension() != ".json") {
      if (path.find(".tmp.") != std::string::npos) ::unlink(path.c_str());  // a write cut short
      continue;
    }
    auto text = files::read(path);
    std::optional<Pod> pod;
    if (text) {
      auto j = nlohmann::json::parse(*text, nullptr, false);
      if (!j.is_discarded()) pod = podFromJson(j);
    }
    // Before long keys were hashed, a key of 201 to 240 characters was stored under its own name.
    if (pod && fileFor(pod->key) != path && path == dir_ + "/" + pod->key + ".json") {
      fs::rename(path, fileFor(pod->key), ec);
      if (ec) return Error{"io", "renaming " + path + ": " + ec.message(), ec.value()};
    } else if (!pod || fileFor(pod->key) != path) {
      spdlog::error("state file {} does not hold a pod; moved aside to {}.bad", path, path);
      fs::rename(path, path + ".bad", ec);
      continue;
    }
    pods_[pod->key] = std::move(*pod);
  }
  if (ec) return Error{"io", "reading " + dir_ + ": " + ec.message(), ec.value()};
  return pods_.size();
}

Status Registry::put(Pod pod, UniqueFd netnsFd) {
  if (!names::isSafeKey(pod.key)) return Error::make("invalid_argument", "pod key '" + pod.key + "' is not a safe name");
  std::lock_guard lock(mu_);
  if (auto s = files::writeAtomic(fileFor(pod.key), toJson(pod).dump(2) + "\n", 0600); !s) return s;
  if (netnsFd) netns_[pod.key] = std::move(netnsFd);
  else netns_.erase(pod.key);
  pods_[pod.key] = std::move(pod);
  return {};
}

Status Registry::update(const Pod& pod) {
  std::lock_guard lock(mu_);
  auto it = pods_.find(pod.key);
  if (it == pods_.end()) return Error::make("not_found", "pod " + pod.key + " is not held");
  if (auto s = files::writeAtomic(fileFor(pod.key), toJson(pod).dump(2) + "\n", 0600); !s) return s;
  it->second = pod;
  return {};
}

std::optional<Pod> Registry::findByAttachment(const std::string& network, const std::string& containerId,
                                              const std::string& ifname) const {
  std::lock_guard lock(mu_);
  for (const auto& [key, pod] : pods_) {
    if (pod.sameAttachment(network, containerId, ifname)) return pod;
  }
  return std::nullopt;
}

std::optional<Pod> Registry::get(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = pods_.find(key);
  if (it == pods_.end()) return std::nullopt;
  return it->second;
}

Status Registry::remove(const std::string& key) {
  std::lock_guard lock(mu_);
  pods_.erase(key);
  netns_.erase(key);
  if (::unlink(fileFor(key).c_str()) != 0 && errno != ENOENT) {
    auto e = Error::fromErrno("unlink(" + fileFor(key) + ")");
    return Error{"unavailable", "the release could not be persisted: " + e.message, e.errnum};
  }
  return {};
}

std::vector<Pod> Registry::list() const {
  std::lock_guard lock(mu_);
  std::vector<Pod> out;
  out.reserve(pods_.size());
  for (const auto& [k, p] : pods_) out.push_back(p);
  return out;
}

Expected<UniqueFd> Registry::netnsOf(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = netns_.find(key);
  if (it == netns_.end() || !it->second) return Error::make("not_found", "no network namespace held for pod " + key);
  UniqueFd dup(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 0));
  if (!dup) return Error::fromErrno("dup(netns of " + key + ")");
  return dup;
}

std::size_t Registry::size() const {
  std::lock_guard lock(mu_);
  return pods_.size();
}

std::size_t Registry::activeCount() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [k, p] : pods_) n += p.active ? 1 : 0;
  return n;
}

}  // namespace colo::node
