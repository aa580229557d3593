// The hint a busy-poll loop gives the CPU between two looks at shared memory: the right
// instruction per architecture (x86 `pause`, Arm `yield`), nothing where there is none.
#pragma once

#include <atomic>

namespace colo {

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);  // at least keep the compiler re-reading
#endif
}

}  // namespace colo
