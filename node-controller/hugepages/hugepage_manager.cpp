#include "hugepages/hugepage_manager.h"
#include "colo/common/protocol.h"

#include <linux/magic.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>

#include <limits>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <numeric>

#include "colo/common/files.h"
#include "colo/common/quantity.h"

namespace colo::node {

using quantity::formatBytes;

HugepageManager::HugepageManager(Metrics& metrics, std::uint64_t pageSize, std::uint64_t budget)
    : metrics_(metrics), pageSize_(pageSize), budget_(budget) {
  metrics_.describe("colo_hugepages_budget_bytes", "gauge", "Node budget for per-pod hugetlbfs mounts.");
  metrics_.describe("colo_hugepages_reserved_bytes", "gauge", "Hugepage bytes reserved by pods on this node.");
  metrics_.describe("colo_hugepages_refused_total", "counter", "Hugepage requests refused, by reason.");
  metrics_.set("colo_hugepages_budget_bytes", {}, static_cast<double>(budget_));
  metrics_.set("colo_hugepages_reserved_bytes", {}, 0);
  for (const char* r : {"budget", "malformed", "unavailable"}) metrics_.add("colo_hugepages_refused_total", {{"reason", r}}, 0);
}

Status HugepageManager::probe() {
  const std::string dir = "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(pageSize_ / 1024) + "kB";
  struct stat st{};
  available_ = pageSize_ > 0 && ::stat(dir.c_str(), &st) == 0;
  if (!available_) return proto::error(proto::ErrorCode::Unavailable, "the kernel has no " + formatBytes(pageSize_) + " hugepages (" + dir + " missing)");
  auto reserved = files::read(dir + "/nr_hugepages");
  const auto pages = reserved ? std::stoull(*reserved) : 0;
  if (pages * pageSize_ < budget_) {
    spdlog::warn("hugepages: budget {} exceeds the {} reserved on this node ({} pages of {}); pods may fault when they touch pages",
                 formatBytes(budget_), formatBytes(pages * pageSize_), pages, formatBytes(pageSize_));
  }
  return {};
}

std::uint64_t HugepageManager::used() const {
  std::lock_guard lock(mu_);
  return std::accumulate(reserved_.begin(), reserved_.end(), std::uint64_t{0}, [](auto a, const auto& kv) { return a + kv.second; });
}

// Saturates instead of wrapping: a size near 2^64 must stay huge (and be refused by the budget),
// never become 0, which hugetlbfs reads as "no limit".
std::uint64_t HugepageManager::roundUp(std::uint64_t bytes) const {
  if (pageSize_ == 0) return bytes;
  const std::uint64_t pages = bytes / pageSize_ + (bytes % pageSize_ != 0 ? 1 : 0);
  if (pages > std::numeric_limits<std::uint64_t>::max() / pageSize_) return std::numeric_limits<std::uint64_t>::max() / pageSize_ * pageSize_;
  return pages * pageSize_;
}

bool HugepageManager::isHugetlbfs(const std::string& dir) {
  struct statfs fs{};
  return ::statfs(dir.c_str(), &fs) == 0 && static_cast<unsigned long>(fs.f_type) == HUGETLBFS_MAGIC;
}

Expected<std::uint64_t> HugepageManager::mount(const std::string& key, const std::string& dir, std::uint64_t bytes) {
  if (!available_) {
    metrics_.add("colo_hugepages_refused_total", {{"reason", "unavailable"}});
    return proto::error(proto::ErrorCode::Unavailable, "this node has no " + formatBytes(pageSize_) + " hugepages");
  }
  const std::uint64_t size = roundUp(bytes);
  {
    std::lock_guard lock(mu_);
    std::uint64_t inUse = 0;
    for (const auto& [k, v] : reserved_) inUse += k == key ? 0 : v;
    if (size == 0 || size > budget_ || inUse > budget_ - size) {
      metrics_.add("colo_hugepages_refused_total", {{"reason", "budget"}});
      const std::uint64_t left = budget_ > inUse ? budget_ - inUse : 0;
      return proto::error(proto::ErrorCode::ResourceExhausted, "asks for " + formatBytes(size) + " of hugepages but the node budget " +
                                                   formatBytes(budget_) + " has " + formatBytes(left) + " left: short by " +
                                                   formatBytes(size - left));
    }
    reserved_[key] = size;
  }
  auto release = [&] {
    std::lock_guard lock(mu_);
    reserved_.erase(key);
  };
  if (auto s = files::makeDirs(dir, 0755); !s) {
    release();
    return s.error();
  }
  if (!isHugetlbfs(dir)) {
    const std::string opts = "pagesize=" + std::to_string(pageSize_) + ",size=" + std::to_string(size) + ",mode=01777";
    if (::mount("colo-hugepages", dir.c_str(), "hugetlbfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts.c_str()) != 0) {
      auto err = Error::fromErrno("mount(hugetlbfs " + dir + ", " + opts + ")");
      release();
      ::rmdir(dir.c_str());
      return err;
    }
  }
  metrics_.set("colo_hugepages_reserved_bytes", {}, static_cast<double>(used()));
  return size;
}

Status HugepageManager::unmount(const std::string& key, const std::string& dir) {
  if (isHugetlbfs(dir) && ::umount2(dir.c_str(), MNT_DETACH) != 0) return Error::fromErrno("umount(" + dir + ")");
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return Error::fromErrno("rmdir(" + dir + ")");
  {
    std::lock_guard lock(mu_);
    reserved_.erase(key);
  }
  metrics_.set("colo_hugepages_reserved_bytes", {}, static_cast<double>(used()));
  return {};
}

Status HugepageManager::verify(const std::string& dir, std::uint64_t bytes) const {
  struct statfs st{};
  if (::statfs(dir.c_str(), &st) != 0 || st.f_type != HUGETLBFS_MAGIC) return proto::error(proto::ErrorCode::NotFound, "no hugetlbfs mount at " + dir);
  const auto size = static_cast<std::uint64_t>(st.f_blocks) * static_cast<std::uint64_t>(st.f_bsize);
  if (size != bytes) {
    return proto::error(proto::ErrorCode::InvalidArgument, "the hugetlbfs mount at " + dir + " holds " + std::to_string(size) + " bytes, not " + std::to_string(bytes));
  }
  return {};
}
}  // namespace colo::node
