// Per-pod hugetlbfs mounts within a node budget that is never exceeded.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "colo/common/error.h"
#include "metrics.h"

namespace colo::node {

class HugepageManager {
 public:
  HugepageManager(Metrics& metrics, std::uint64_t pageSize, std::uint64_t budget);

  // Checks that the kernel has this page size; without it every request is refused, clearly.
  Status probe();
  bool available() const { return available_; }
  std::uint64_t pageSize() const { return pageSize_; }
  std::uint64_t budget() const { return budget_; }
  std::uint64_t used() const;
  std::uint64_t roundUp(std::uint64_t bytes) const;

  // Reserves `bytes` (rounded up to whole pages) for `key` and mounts hugetlbfs at `dir`, or, when
  // `dir` already holds a hugetlbfs mount (a restarted agent), adopts it. "resource_exhausted"
  // names the shortfall; nothing is reserved on failure.
  Expected<std::uint64_t> mount(const std::string& key, const std::string& dir, std::uint64_t bytes);
  // Unmounts and releases the reservation. Idempotent. Fails when the directory cannot be
  // unmounted or removed (then the reservation stays, for the retry).
  Status unmount(const std::string& key, const std::string& dir);
  // The hugetlbfs mount at `dir` exists and holds `bytes`.
  Status verify(const std::string& dir, std::uint64_t bytes) const;

  static bool isHugetlbfs(const std::string& dir);

 private:
  Metrics& metrics_;
  std::uint64_t pageSize_, budget_;
  bool available_ = false;
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> reserved_;
};

}  // namespace colo::node
