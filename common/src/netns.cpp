#include "colo/common/netns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <thread>

#include "colo/common/wire.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace colo::netns {

std::uint64_t socketCookie(int sock) {
  std::uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(sock, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0 || len != sizeof(cookie)) return 0;
  return cookie;
}

namespace {

// A throwaway socket made inside the netns carries its cookie.
std::uint64_t cookieOf(int fd) {
  std::uint64_t cookie = 0;
  (void)runIn(fd, [&]() -> Status {
    UniqueFd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (s) cookie = socketCookie(s.get());
    return {};
  });
  return cookie;
}

}  // namespace

Expected<Identity> inspect(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return Error::fromErrno("fstat(netns fd)");
  const int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) return Error{"bad_netns", "descriptor is not a namespace", errno};
  if (type != CLONE_NEWNET) return Error::make("bad_netns", "descriptor is a namespace, but not a network namespace");
  return Identity{static_cast<std::uint64_t>(st.st_ino), static_cast<std::uint64_t>(st.st_dev), cookieOf(fd)};
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
