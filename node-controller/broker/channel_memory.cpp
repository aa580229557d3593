#include "broker/channel_memory.h"
#include "colo/common/protocol.h"

#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstring>

#include "colo/channel_layout.h"

namespace colo::node {

HugepageLedger::HugepageLedger() : inotify_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {}

std::uint64_t HugepageLedger::chargedLocked(const std::string& pod) const {
  auto it = charged_.find(pod);
  return it == charged_.end() ? 0 : it->second;
}

void HugepageLedger::collectLocked() const {
  if (!inotify_) return;
  alignas(inotify_event) char buf[4096];
  for (;;) {
    const ssize_t n = ::read(inotify_.get(), buf, sizeof(buf));
    if (n <= 0) return;  // EAGAIN: nothing more (a lost event only keeps a charge: never over the share)
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (!(ev->mask & IN_IGNORED)) continue;  // the watch went with the inode: the pages are free
      auto seg = segments_.find(ev->wd);
      if (seg == segments_.end()) continue;
      auto c = charged_.find(seg->second.pod);
      if (c != charged_.end()) {
        c->second -= std::min(c->second, seg->second.bytes);
        if (c->second == 0) charged_.erase(c);
      }
      segments_.erase(seg);
    }
  }
}

bool HugepageLedger::charge(const std::string& pod, std::uint64_t share, std::uint64_t used, std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  collectLocked();
  const std::uint64_t c = chargedLocked(pod);
  if (used > share || c > share - used || bytes > share - used - c) return false;
  charged_[pod] += bytes;
  return true;
}

void HugepageLedger::refund(const std::string& pod, std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  auto c = charged_.find(pod);
  if (c == charged_.end()) return;
  c->second -= std::min(c->second, bytes);
  if (c->second == 0) charged_.erase(c);
}

Status HugepageLedger::follow(int memFd, const std::string& pod, std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  if (!inotify_) return proto::error(proto::ErrorCode::Unavailable, "no inotify instance to follow hugepage channels with");
  // The watch is on the segment's inode (reached through our descriptor); it is still ours here,
  // so the inode cannot die before the watch is in place.
  const std::string path = "/proc/self/fd/" + std::to_string(memFd);
  const int wd = ::inotify_add_watch(inotify_.get(), path.c_str(), IN_DELETE_SELF);
  if (wd < 0) return Error::fromErrno("inotify_add_watch(hugepage channel)");
  segments_[wd] = Segment{pod, bytes};
  return {};
}

std::uint64_t HugepageLedger::charged(const std::string& pod) const {
  std::lock_guard lock(mu_);
  collectLocked();
  return chargedLocked(pod);
}

std::size_t HugepageLedger::followed() const {
  std::lock_guard lock(mu_);
  collectLocked();
  return segments_.size();
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
  if (capacity == 0) return proto::error(proto::ErrorCode::InvalidArgument, "channel: too small");
  return mem;
}

}  // namespace

Expected<ChannelMemory> makeChannelMemory(std::uint64_t asked, const std::string& podKey, std::uint64_t hugeShare,
                                          const std::string& hugeMount, HugepageLedger& ledger) {
  ChannelMemory out;
  if (hugeShare > 0) {
    const std::uint64_t size = (asked + kHuge - 1) / kHuge * kHuge;
    if (!ledger.charge(podKey, hugeShare, mountUsed(hugeMount), size)) {
      out.note = "the pod's hugepage share has no room for " + std::to_string(size) + " bytes; ordinary memory instead";
      out.fallback = "pod_share";
    } else if (auto m = sealedSegment(MFD_HUGETLB | MFD_HUGE_2MB, size, out.capacity); !m) {
      ledger.refund(podKey, size);
      out.note = "the node's hugepage pool is short of " + std::to_string(size) + " bytes (" + m.error().message + "); ordinary memory instead";
      out.fallback = "hugepage_pool";
    } else if (auto f = ledger.follow(m->get(), podKey, size); !f) {
      ledger.refund(podKey, size);  // closing *m frees the pages: nothing to follow
      out.note = "colo-node cannot follow a hugepage channel's life (" + f.error().message + "); ordinary memory instead";
      out.fallback = "untracked";
    } else {
      out.mem = std::move(*m);
      out.size = size;
      out.memory = "hugepages";
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
