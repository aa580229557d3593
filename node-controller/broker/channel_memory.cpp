#include "broker/channel_memory.h"

#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstring>

#include "colo/channel_layout.h"

namespace colo::node {

std::uint64_t HugepageLedger::chargedLocked(const std::string& pod) const {
  auto it = charged_.find(pod);
  std::uint64_t sum = 0;
  if (it != charged_.end()) {
    for (const auto& [conn, bytes] : it->second) sum += bytes;
  }
  return sum;
}

bool HugepageLedger::charge(const std::string& pod, std::uint64_t conn, std::uint64_t share, std::uint64_t used, std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  const std::uint64_t c = chargedLocked(pod);
  if (used > share || c > share - used || bytes > share - used - c) return false;
  charged_[pod][conn] += bytes;
  return true;
}

void HugepageLedger::refund(const std::string& pod, std::uint64_t conn, std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  auto it = charged_.find(pod);
  if (it == charged_.end()) return;
  auto c = it->second.find(conn);
  if (c == it->second.end()) return;
  c->second -= std::min(c->second, bytes);
}

void HugepageLedger::connectionClosed(std::uint64_t conn) {
  std::lock_guard lock(mu_);
  for (auto& [pod, conns] : charged_) conns.erase(conn);
  std::erase_if(charged_, [](const auto& kv) { return kv.second.empty(); });
}

std::uint64_t HugepageLedger::charged(const std::string& pod) const {
  std::lock_guard lock(mu_);
  return chargedLocked(pod);
}

namespace {

constexpr std::uint64_t kHuge = 2ULL << 20;

// Bytes the pod's own hugetlbfs mount holds (its files count against the same share).
std::uint64_t mountUsed(const std::string& mount) {
  struct statfs fs{};
  if (mount.empty() || ::statfs(mount.c_str(), &fs) != 0) return 0;
  return static_cast<std::uint64_t>(fs.f_blocks - fs.f_bfree) * static_cast<std::uint64_t>(fs.f_bsize);
}

// A sized, sealed memfd, mapped to lay it out. hugetlb reserves the pages at mmap: a short pool
// fails there (ENOMEM), which the caller turns into the fallback.
Expected<UniqueFd> sealedSegment(unsigned flags, std::uint64_t size, std::uint64_t& capacity) {
  UniqueFd mem(::memfd_create("colo-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING | flags));
  if (!mem) return Error::fromErrno("memfd_create(colo-channel)");
  if (::ftruncate(mem.get(), static_cast<off_t>(size)) != 0) return Error::fromErrno("ftruncate(colo-channel)");
  if (::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) return Error::fromErrno("fcntl(F_ADD_SEALS, colo-channel)");
  if (::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_SEAL) != 0) return Error::fromErrno("fcntl(F_SEAL_SEAL, colo-channel)");
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, mem.get(), 0);
  if (base == MAP_FAILED) return Error::fromErrno("mmap(colo-channel)");
  capacity = colo_channel_layout_init(base, size);
  ::munmap(base, size);
  if (capacity == 0) return Error::make("invalid_argument", "channel: too small");
  return mem;
}

}  // namespace

Expected<ChannelMemory> makeChannelMemory(std::uint64_t asked, const std::string& podKey, std::uint64_t conn, std::uint64_t hugeShare,
                                          const std::string& hugeMount, HugepageLedger& ledger) {
  ChannelMemory out;
  if (hugeShare > 0) {
    const std::uint64_t size = (asked + kHuge - 1) / kHuge * kHuge;
    if (!ledger.charge(podKey, conn, hugeShare, mountUsed(hugeMount), size)) {
      out.note = "the pod's hugepage share has no room for " + std::to_string(size) + " bytes; ordinary memory instead";
      out.fallback = "pod_share";
    } else if (auto m = sealedSegment(MFD_HUGETLB | MFD_HUGE_2MB, size, out.capacity)) {
      out.mem = std::move(*m);
      out.size = size;
      out.memory = "hugepages";
    } else {
      ledger.refund(podKey, conn, size);
      out.note = "the node's hugepage pool is short of " + std::to_string(size) + " bytes (" + m.error().message + "); ordinary memory instead";
      out.fallback = "hugepage_pool";
    }
  } else {
    out.note = "the pod has no hugepages (annotation colo.dev/hugepages); ordinary memory instead";
  }
  if (!out.mem) {
    auto m = sealedSegment(0, asked, out.capacity);
    if (!m) return m.error();
    out.mem = std::move(*m);
    out.size = asked;
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return Error::fromErrno("socketpair(channel bells)");
  out.bell0.reset(sv[0]);
  out.bell1.reset(sv[1]);
  return out;
}

}  // namespace colo::node
