// A channel's private state (the C API's opaque colo_channel). Private to libcolo; the channel
// fuzzer includes it to check that every pointer handed out lies inside the mapping.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "colo/common/unique_fd.h"
#include "ring.h"

struct colo_channel {
  colo::UniqueFd mem, bell, pair;  // bell: this side's end of the doorbell socketpair
  void* base = nullptr;
  std::size_t size = 0;
  colo::ring::Producer tx;
  colo::ring::Consumer rx;
  std::uint64_t reserved = 0;  // payload bytes of the open reservation
  std::string memory;
  std::string broken;  // set once the peer broke the protocol: the channel is dead from then on
  ~colo_channel() {
    if (base) ::munmap(base, size);
  }
};
