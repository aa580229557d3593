// The memory and the doorbells of one shared-memory channel, made so that neither pod can break
// the other with them (docs/protocol.md "Channel segment"):
// - the segment is a memfd sealed against shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW,
//   then F_SEAL_SEAL): a peer's ftruncate fails with EPERM instead of the other side's next
//   access dying of SIGBUS. Hugepages come from memfd_create(MFD_HUGETLB | MFD_ALLOW_SEALING)
//   (sealable since Linux 4.16), charged to the pod's hugepage share until the kernel frees
//   them (HugepageLedger).
// - the doorbells are the two ends of one AF_UNIX stream socketpair, each side written with
//   MSG_DONTWAIT: whatever a peer does to the shared file status flags or the queue, a wake-up
//   never blocks the writer (a full queue means a wake-up is already pending).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "colo/common/error.h"
#include "colo/common/unique_fd.h"

namespace colo::node {

struct ChannelMemory {
  UniqueFd mem, bell0, bell1;
  std::uint64_t size = 0;      // bytes of the segment (what the offer must say)
  std::uint64_t capacity = 0;  // ring capacity
  std::string memory = "memfd";
  std::string note;            // why ordinary memory although hugepages were possible
  std::string fallback;        // metric reason of that fallback ("" when none)
};

// Hugepage bytes colo-node gave to channels, per pod: with what the pod's own hugetlbfs mount
// holds, never more than the pod's share. A charge lasts as long as the memory does, wherever it
// went: colo-node watches each hugepage segment it made with inotify (IN_DELETE_SELF), which the
// kernel reports when the last reference of any kind (a descriptor in any process, a mapping, an
// O_PATH) is gone, i.e. when the pages are back in the pool; only then is the charge refunded.
// The watch holds no reference that would keep the pages. A pod that is deleted keeps its charges
// while the memory lives on in its peers (a re-created pod with the same key finds them).
class HugepageLedger {
 public:
  HugepageLedger();
  // Charges `bytes` to `pod` when `share` minus `used` (the pod's mount) minus its channels has room.
  bool charge(const std::string& pod, std::uint64_t share, std::uint64_t used, std::uint64_t bytes);
  // Gives back a charge whose segment was never made.
  void refund(const std::string& pod, std::uint64_t bytes);
  // The segment `memFd` now carries `bytes` of `pod`'s charge: refunded when the kernel frees it.
  // An error (no inotify, no watch left): the caller refunds and hands out ordinary memory.
  Status follow(int memFd, const std::string& pod, std::uint64_t bytes);
  std::uint64_t charged(const std::string& pod) const;
  std::size_t followed() const;  // segments alive

 private:
  void collectLocked() const;  // refunds the segments the kernel has freed
  std::uint64_t chargedLocked(const std::string& pod) const;
  mutable std::mutex mu_;
  UniqueFd inotify_;
  struct Segment {
    std::string pod;
    std::uint64_t bytes;
  };
  mutable std::map<int, Segment> segments_;              // watch descriptor -> segment
  mutable std::map<std::string, std::uint64_t> charged_;  // pod -> bytes
};

// Creates, sizes, seals and lays out the segment, and makes the bells. Hugepages when `hugeShare`
// > 0 and `ledger` has room for the pod (`hugeMount`: the pod's hugetlbfs mount, for what it
// already uses), else an ordinary memfd. Errors are the node's (out of memory, descriptors).
Expected<ChannelMemory> makeChannelMemory(std::uint64_t asked, const std::string& podKey, std::uint64_t hugeShare,
                                          const std::string& hugeMount, HugepageLedger& ledger);

// The seals every channel segment carries.
inline constexpr int kChannelSeals = 0x0002 /*F_SEAL_SHRINK*/ | 0x0004 /*F_SEAL_GROW*/ | 0x0001 /*F_SEAL_SEAL*/;

}  // namespace colo::node
