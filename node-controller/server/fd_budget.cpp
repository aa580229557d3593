#include "server/fd_budget.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>

namespace colo::node {

std::size_t openDescriptors() {
  struct stat st{};
  if (::stat("/proc/self/fd", &st) == 0 && st.st_size > 0) return static_cast<std::size_t>(st.st_size);
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
    if (n > 0) --n;  // the directory's own descriptor
  }
  return n;
}

std::size_t freeDescriptors() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return static_cast<std::size_t>(-1);
  const std::size_t open = openDescriptors();
  return rl.rlim_cur > open ? static_cast<std::size_t>(rl.rlim_cur) - open : 0;
}

}  // namespace colo::node
