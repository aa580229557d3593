// rtnetlink through libnl: the links and addresses of one network namespace, the one the
// calling thread was in when the socket was opened (a netlink socket stays bound to it). RAII over
// the libnl socket; errors carry the call site and the kernel's errno.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "colo/common/error.h"

namespace colo::node::netlink {

class RouteSocket {
 public:
  [[nodiscard]] static Expected<RouteSocket> open();

  RouteSocket(RouteSocket&&) noexcept;
  RouteSocket& operator=(RouteSocket&&) noexcept;
  ~RouteSocket();

  [[nodiscard]] Status setLinkUp(const std::string& ifname);
  // cidr: "198.18.0.1/32" or "2001:2::1/128". IPv6 addresses skip duplicate address detection so
  // that they can be bound at once.
  [[nodiscard]] Status addAddress(const std::string& ifname, const std::string& cidr);
  // An address just added is not always usable at once (IPv6 here: a first TCP connect to it can
  // hang a second and fail with ENETUNREACH). Waits until a TCP SYN to ip's port 9 comes back
  // refused, in the calling thread's namespace; nothing must listen there.
  [[nodiscard]] static Status waitReachable(const std::string& ip, std::chrono::milliseconds timeout);
  // The link's addresses as "address/prefix", both families (what the kernel holds, for checks).
  [[nodiscard]] Expected<std::vector<std::string>> addresses(const std::string& ifname);

 private:
  struct Impl;
  explicit RouteSocket(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace colo::node::netlink
