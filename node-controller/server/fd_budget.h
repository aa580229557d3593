// colo-node's descriptor budget: pods together must never take the descriptors that the CNI path
// (and the rest of colo-node) needs, whatever RLIMIT_NOFILE is, even lowered while it runs.
#pragma once

#include <cstddef>

namespace colo::node {

// Descriptors this process has open. Linux 6.2+ reports it as the size of /proc/self/fd (cheap);
// on older kernels the entries are counted.
std::size_t openDescriptors();
// How many more it may open: RLIMIT_NOFILE (soft) minus openDescriptors(); 0 when at or over it.
std::size_t freeDescriptors();

}  // namespace colo::node
