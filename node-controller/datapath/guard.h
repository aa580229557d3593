// The guard: watches the kernel's sockmap receive functions for blocking reads and spurious
// EAGAIN, and splice(2) for reads, on spliced sockets of colo's pods (bpf/colo_guard.bpf.c). The BPF side withdraws a
// guarded pod from the splice itself (no round trip); colo-node hears of it once per pod and kind
// through a ring buffer, read on a thread of the guard's own.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "colo/common/error.h"
#include "datapath/bpf_skeleton.h"

struct ring_buffer;

namespace colo::node {

struct GuardEvent {
  std::uint32_t kind = 0;  // COLO_GUARD_BLOCKING_READ, COLO_GUARD_SPURIOUS_EAGAIN or COLO_GUARD_SPLICE_READ
  std::uint32_t pid = 0, tid = 0, flags = 0;
  colo_addr addr{};
  std::string comm;
};

class Guard {
 public:
  using Sink = std::function<void(const GuardEvent&)>;
  // Loads and attaches (fentry/fexit; kprobe/kretprobe where fentry cannot attach), reusing the
  // pinned colo_pods in pinDir, and starts reading events into `sink`.
  static Expected<std::unique_ptr<Guard>> load(const std::string& pinDir, Sink sink);
  ~Guard();
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

  const std::string& how() const { return how_; }  // "fentry/fexit on tcp_bpf_recvmsg, ..."
  bool watchesSplice() const { return splice_; }    // splice(2) readers are seen too
  std::optional<colo_guard_count> count(const colo_addr& a) const;
  std::uint64_t spliceReads(const colo_addr& a) const;
  void forget(const colo_addr& a);  // the address left the pod map

 private:
  Guard() = default;
  static int onSample(void* ctx, void* data, std::size_t size);
  std::unique_ptr<ColoGuardBpf> bpf_;
  ring_buffer* rb_ = nullptr;
  Sink sink_;
  std::string how_;
  bool splice_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace colo::node
