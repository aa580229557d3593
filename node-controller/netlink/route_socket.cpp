#include "netlink/route_socket.h"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <thread>

#include "colo/common/unique_fd.h"

namespace colo::node::netlink {
namespace {

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using SockPtr = std::unique_ptr<nl_sock, Deleter<nl_sock, nl_socket_free>>;
using LinkPtr = std::unique_ptr<rtnl_link, Deleter<rtnl_link, rtnl_link_put>>;
using AddrPtr = std::unique_ptr<rtnl_addr, Deleter<rtnl_addr, rtnl_addr_put>>;
using NlAddrPtr = std::unique_ptr<nl_addr, Deleter<nl_addr, nl_addr_put>>;
using CachePtr = std::unique_ptr<nl_cache, Deleter<nl_cache, nl_cache_free>>;

// libnl reports its own codes; the kernel's errno is kept by the error callback below where libnl
// lets it run, and read back from libnl's code elsewhere.
int recordErrno(sockaddr_nl*, nlmsgerr* e, void* arg) {
  *static_cast<int*>(arg) = -e->error;
  return NL_STOP;
}

int errnoOf(int nlerr) {
  switch (-nlerr) {
    case NLE_NODEV: return ENODEV;
    case NLE_EXIST: return EEXIST;
    case NLE_PERM: return EPERM;
    case NLE_NOACCESS: return EACCES;
    case NLE_INVAL: return EINVAL;
    case NLE_BUSY: return EBUSY;
    case NLE_RANGE: return ERANGE;
    case NLE_NOMEM: return ENOMEM;
    case NLE_AF_NOSUPPORT: return EAFNOSUPPORT;
    case NLE_OPNOTSUPP: return EOPNOTSUPP;
    case NLE_NOADDR: return EADDRNOTAVAIL;
    default: return 0;
  }
}

}  // namespace

struct RouteSocket::Impl {
  SockPtr sock;
  int lastErrno = 0;

  // A failed libnl call: the kernel's errno when it refused, else libnl's own reason.
  Error fail(const std::string& site, int nlerr) {
    if (lastErrno != 0) {
      const int e = lastErrno;
      lastErrno = 0;
      return Error::fromErrno(site, e);
    }
    if (const int e = errnoOf(nlerr); e != 0) return Error::fromErrno(site, e);
    return Error::make("netlink", site + ": " + nl_geterror(nlerr));
  }

  Expected<LinkPtr> link(const std::string& ifname) {
    rtnl_link* raw = nullptr;
    if (int err = rtnl_link_get_kernel(sock.get(), 0, ifname.c_str(), &raw); err < 0) {
      if (err == -NLE_OBJ_NOTFOUND) return Error::fromErrno("RTM_GETLINK " + ifname, ENODEV);  // libnl's word for it
      return fail("RTM_GETLINK " + ifname, err);
    }
    return LinkPtr(raw);
  }

  Expected<int> ifindex(const std::string& ifname) {
    auto l = link(ifname);
    if (!l) return l.error();
    return rtnl_link_get_ifindex(l->get());
  }

  Expected<NlAddrPtr> parse(const std::string& cidr) {
    nl_addr* raw = nullptr;
    if (int err = nl_addr_parse(cidr.c_str(), AF_UNSPEC, &raw); err < 0) {
      return Error::make("invalid_argument", "'" + cidr + "' is not an address/prefix: " + nl_geterror(err));
    }
    NlAddrPtr a(raw);
    if (nl_addr_get_family(a.get()) != AF_INET && nl_addr_get_family(a.get()) != AF_INET6) {
      return Error::make("invalid_argument", "'" + cidr + "' is not an IPv4 or IPv6 address");
    }
    return a;
  }
};

RouteSocket::RouteSocket(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RouteSocket::RouteSocket(RouteSocket&&) noexcept = default;
RouteSocket& RouteSocket::operator=(RouteSocket&&) noexcept = default;
RouteSocket::~RouteSocket() = default;

Expected<RouteSocket> RouteSocket::open() {
  auto impl = std::make_unique<Impl>();
  impl->sock.reset(nl_socket_alloc());
  if (!impl->sock) return Error::make("resource_exhausted", "nl_socket_alloc: out of memory");
  if (int err = nl_connect(impl->sock.get(), NETLINK_ROUTE); err < 0) {
    return Error::make("netlink", std::string("nl_connect(NETLINK_ROUTE): ") + nl_geterror(err));
  }
  nl_socket_modify_err_cb(impl->sock.get(), NL_CB_CUSTOM, recordErrno, &impl->lastErrno);
  return RouteSocket(std::move(impl));
}

Status RouteSocket::setLinkUp(const std::string& ifname) {
  auto link = impl_->link(ifname);
  if (!link) return link.error();
  LinkPtr change(rtnl_link_alloc());
  if (!change) return Error::make("resource_exhausted", "rtnl_link_alloc: out of memory");
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (int err = rtnl_link_change(impl_->sock.get(), link->get(), change.get(), 0); err < 0) return impl_->fail("RTM_NEWLINK " + ifname + " up", err);
  return {};
}

Status RouteSocket::addAddress(const std::string& ifname, const std::string& cidr) {
  auto index = impl_->ifindex(ifname);
  if (!index) return index.error();
  auto local = impl_->parse(cidr);
  if (!local) return local.error();
  AddrPtr addr(rtnl_addr_alloc());
  if (!addr) return Error::make("resource_exhausted", "rtnl_addr_alloc: out of memory");
  rtnl_addr_set_ifindex(addr.get(), *index);
  if (int err = rtnl_addr_set_local(addr.get(), local->get()); err < 0) return impl_->fail("rtnl_addr_set_local " + cidr, err);
  if (nl_addr_get_family(local->get()) == AF_INET6) rtnl_addr_set_flags(addr.get(), IFA_F_NODAD);
  if (int err = rtnl_addr_add(impl_->sock.get(), addr.get(), NLM_F_EXCL); err < 0) return impl_->fail("RTM_NEWADDR " + cidr + " on " + ifname, err);
  return {};
}

Status RouteSocket::waitReachable(const std::string& ip, std::chrono::milliseconds timeout) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(9);
    len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(9);
    len = sizeof(sockaddr_in6);
  } else {
    return Error::make("invalid_argument", "'" + ip + "' is not an IP address");
  }
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  int last = 0;
  while (Clock::now() < deadline) {
    UniqueFd s(::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s) return Error::fromErrno("socket");
    int err = 0;
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0) {
      return Error::make("invalid_argument", "something listens on " + ip + " port 9");
    }
    err = errno;
    if (err == EINPROGRESS) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd p{s.get(), POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0))) != 1) break;
      socklen_t elen = sizeof(err);
      ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
    }
    if (err == ECONNREFUSED) return {};  // the SYN went out and the RST came back
    last = err;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Error::fromErrno(ip + " not reachable within " + std::to_string(timeout.count()) + " ms", last != 0 ? last : ETIMEDOUT);
}

Expected<std::vector<std::string>> RouteSocket::addresses(const std::string& ifname) {
  auto index = impl_->ifindex(ifname);
  if (!index) return index.error();
  nl_cache* raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(impl_->sock.get(), &raw); err < 0) return impl_->fail("RTM_GETADDR", err);
  CachePtr cache(raw);
  std::vector<std::string> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o != nullptr; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(a) != *index) continue;
    nl_addr* local = rtnl_addr_get_local(a);
    char buf[INET6_ADDRSTRLEN];
    if (!local || !::inet_ntop(nl_addr_get_family(local), nl_addr_get_binary_addr(local), buf, sizeof(buf))) continue;
    out.push_back(std::string(buf) + "/" + std::to_string(rtnl_addr_get_prefixlen(a)));
  }
  return out;
}

}  // namespace colo::node::netlink
