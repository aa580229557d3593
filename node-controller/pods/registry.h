// The pods this node's agent holds, persisted one file per pod under <stateDir>/pods so that a
// restarted agent still answers CHECK and DEL for pods added before.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "colo/common/error.h"
#include "colo/common/unique_fd.h"
#include "pods/pod.h"

namespace colo::node {

class Registry {
 public:
  explicit Registry(std::string stateDir);

  // Reads every persisted pod; unreadable files are reported and moved aside, never fatal.
  // Returns how many pods were loaded.
  Expected<std::size_t> load();

  // Adds or replaces the pod under its key; keeps `netnsFd` open while the pod is held.
  Status put(Pod pod, UniqueFd netnsFd);
  // Persists new fields of a held pod; its netns descriptor stays. Not held: not_found.
  Status update(const Pod& pod);
  std::optional<Pod> findByAttachment(const std::string& network, const std::string& containerId, const std::string& ifname) const;
  std::optional<Pod> get(const std::string& key) const;
  // Forgets the pod and deletes its state file. The pod is forgotten either way; fails when the
  // file could not be deleted (a read-only state dir: the pod would come back at restart).
  Status remove(const std::string& key);
  std::vector<Pod> list() const;
  // A new descriptor for the pod's netns, while the pod is held.
  Expected<UniqueFd> netnsOf(const std::string& key) const;
  std::size_t size() const;
  std::size_t activeCount() const;
  // The pod's state file: <key>.json, or a hashed name for keys over kMaxPlainKey characters.
  static constexpr std::size_t kMaxPlainKey = 200;
  std::string fileFor(const std::string& key) const;

 private:
  std::string dir_;
  mutable std::mutex mu_;
  std::map<std::string, Pod> pods_;
  std::map<std::string, UniqueFd> netns_;  // runtime only: not persisted
};

}  // namespace colo::node
