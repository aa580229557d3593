#include "colo/common/netns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <thread>

#include "colo/common/wire.h"

namespace colo::netns {

Expected<Identity> inspect(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return Error::fromErrno("fstat(netns fd)");
  const int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) return Error{"bad_netns", "descriptor is not a namespace", errno};
  if (type != CLONE_NEWNET) return Error::make("bad_netns", "descriptor is a namespace, but not a network namespace");
  return Identity{static_cast<std::uint64_t>(st.st_ino), static_cast<std::uint64_t>(st.st_dev)};
}

Expected<UniqueFd> open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::fromErrno("open(" + path + ")");
  return fd;
}

Expected<Identity> current() {
  auto fd = open("/proc/thread-self/ns/net");
  if (!fd) return fd.error();
  return inspect(fd->get());
}

Status runIn(int fd, const std::function<Status()>& fn) {
  Status result;
  std::thread t([&] {
    if (::setns(fd, CLONE_NEWNET) != 0) {
      result = Error::fromErrno("setns(CLONE_NEWNET)");
      return;
    }
    result = fn();
  });
  t.join();
  return result;
}

Expected<UniqueFd> listenAbstractIn(int fd, const std::string& name) {
  UniqueFd out;
  auto s = runIn(fd, [&]() -> Status {
    auto l = wire::listenUnix("@" + name, 0);
    if (!l) return l.error();
    out = std::move(l.value());
    return {};
  });
  if (!s) return s.error();
  return out;
}

}  // namespace colo::netns
