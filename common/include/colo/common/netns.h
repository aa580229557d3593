// Network namespace handles: checking that a descriptor really is a netns, and its identity.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "colo/common/error.h"
#include "colo/common/unique_fd.h"

namespace colo::netns {

// inode and device alone are not an identity: the kernel reuses nsfs inode numbers, so a netns
// deleted and re-created at once gets the same pair. The cookie (SO_NETNS_COOKIE) is never reused
// during a boot; 0 means unknown (kernel before 5.14, or a record written before cookies).
struct Identity {
  std::uint64_t inode = 0;
  std::uint64_t device = 0;
  std::uint64_t cookie = 0;
  bool operator==(const Identity&) const = default;
};

// Fails with "bad_netns" when `fd` is not a network namespace (e.g. a regular file or a mount ns).
// Enters the netns on a short thread to read its cookie (needs CAP_SYS_ADMIN; cookie 0 if unavailable).
Expected<Identity> inspect(int fd);

// The cookie of the netns a socket lives in; 0 when the kernel has no SO_NETNS_COOKIE.
std::uint64_t socketCookie(int sock);

// Opens a netns path (e.g. /var/run/netns/x, /proc/<pid>/ns/net) read-only.
Expected<UniqueFd> open(const std::string& path);

// The netns of the calling thread.
Expected<Identity> current();

// Runs `fn` on a dedicated thread that has entered the netns `fd`, and waits for it. setns is
// per thread: the caller's own namespace never changes, and the thread dies with its namespace.
Status runIn(int fd, const std::function<Status()>& fn);

// Binds and listens on the abstract SOCK_SEQPACKET socket `@name` inside the netns `fd`.
Expected<UniqueFd> listenAbstractIn(int fd, const std::string& name);

}  // namespace colo::netns
