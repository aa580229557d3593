// The libbpf skeleton as an RAII type: opened with the pin directory (maps pinned by name are
// reused), configured through rodata, loaded, destroyed with the object.
#pragma once

#include <string>

#include "colo.skel.h"
#include "colo_guard.skel.h"
#include "colo/common/error.h"
#include "colo_types.h"

namespace colo::node {

// The C++ view of the shared structs must match the BPF one byte for byte.
static_assert(sizeof(colo_addr) == 20);
static_assert(sizeof(colo_sock_key) == 44);
static_assert(sizeof(colo_pod_info) == 8);
static_assert(sizeof(colo_guard_count) == 16);
static_assert(sizeof(colo_guard_event) == 52);

class ColoBpf {
 public:
  ColoBpf() = default;
  ColoBpf(const ColoBpf&) = delete;
  ColoBpf& operator=(const ColoBpf&) = delete;
  ~ColoBpf() {
    if (skel_) colo_bpf__destroy(skel_);
  }

  Status openAndLoad(const std::string& pinDir, bool ipv6);
  colo_bpf* get() const { return skel_; }
  colo_bpf* operator->() const { return skel_; }

 private:
  colo_bpf* skel_ = nullptr;
};

// The guard's skeleton (colo_guard.bpf.c). It reuses the pinned colo_pods from the same pin dir.
class ColoGuardBpf {
 public:
  ColoGuardBpf() = default;
  ColoGuardBpf(const ColoGuardBpf&) = delete;
  ColoGuardBpf& operator=(const ColoGuardBpf&) = delete;
  ~ColoGuardBpf() {
    if (skel_) colo_guard_bpf__destroy(skel_);
  }

  enum class Hook { Fentry, Tracepoint, Kprobe };
  // Loads only the programs of one way in. parser: tcp_bpf_recvmsg_parser exists on this kernel
  // and is watched too. splice: the splice(2) watch is loaded as well (attached by attachSplice).
  Status openLoadAttach(const std::string& pinDir, Hook hook, bool parser, bool splice);
  Status attachSplice();
  // Pins the attached links as guard_link_<program> in pinDir (replacing an earlier run's, which
  // then detach), so the guard outlives this process; unpinLinks removes them (datapath off,
  // uninstall removes the whole dir).
  Status pinLinks(const std::string& pinDir);
  static int unpinLinks(const std::string& pinDir);  // how many it removed
  static constexpr const char* kLinkPinPrefix = "guard_link_";
  colo_guard_bpf* operator->() const { return skel_; }

 private:
  colo_guard_bpf* skel_ = nullptr;
};

}  // namespace colo::node
