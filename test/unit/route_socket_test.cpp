// RouteSocket on the real kernel, in a network namespace of the test's own (made on a thread; needs
// CAP_SYS_ADMIN, so skipped when not root).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <thread>

#include "colo/common/unique_fd.h"
#include "netlink/route_socket.h"

namespace colo::node::netlink {
namespace {

// Runs fn on a thread inside a fresh netns; false when the namespace cannot be made.
bool inFreshNetns(const std::function<void()>& fn) {
  bool made = false;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) return;
    made = true;
    fn();
  });
  t.join();
  return made;
}

bool contains(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

// A TCP connection from the address to itself: the address is really usable (IPv6: no DAD wait).
bool tcpToSelf(int af, const char* ip) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (af == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    ::inet_pton(AF_INET, ip, &a->sin_addr);
    len = sizeof(sockaddr_in);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    ::inet_pton(AF_INET6, ip, &a->sin6_addr);
    len = sizeof(sockaddr_in6);
  }
  UniqueFd l(::socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::bind(l.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(l.get(), 1) != 0) return false;
  ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  UniqueFd c(::socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(c.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0) return true;
  ADD_FAILURE() << "connect to " << ip << ": " << std::strerror(errno);
  return false;
}

TEST(RouteSocket, SetsUpLoopbackWithBothFamilies) {
  std::vector<std::string> addrs;
  std::string err;
  bool v4 = false, v6 = false;
  const bool made = inFreshNetns([&] {
    auto rt = RouteSocket::open();
    if (!rt) return void(err = rt.error().message);
    if (auto s = rt->setLinkUp("lo"); !s) return void(err = s.error().message);
    for (const char* a : {"198.18.0.1/32", "198.19.0.1/24", "2001:2::1/128"}) {
      if (auto s = rt->addAddress("lo", a); !s) return void(err = s.error().message);
    }
    for (const char* ip : {"198.18.0.1", "2001:2::1"}) {
      if (auto s = RouteSocket::waitReachable(ip, std::chrono::seconds(2)); !s) return void(err = s.error().message);
    }
    auto got = rt->addresses("lo");
    if (!got) return void(err = got.error().message);
    addrs = *got;
    v4 = tcpToSelf(AF_INET, "198.18.0.1");
    v6 = tcpToSelf(AF_INET6, "2001:2::1");
  });
  if (!made) GTEST_SKIP() << "cannot make a network namespace (not root)";
  ASSERT_EQ(err, "");
  EXPECT_TRUE(contains(addrs, "198.18.0.1/32"));
  EXPECT_TRUE(contains(addrs, "198.19.0.1/24"));
  EXPECT_TRUE(contains(addrs, "2001:2::1/128"));
  EXPECT_TRUE(contains(addrs, "127.0.0.1/8")) << "lo up brings its own address";
  EXPECT_TRUE(v4);
  EXPECT_TRUE(v6) << "an IPv6 address is usable at once";
}

TEST(RouteSocket, ErrorsNameTheCallAndKeepTheKernelsErrno) {
  Status missing, dup, bad, badFamily, noRoute;
  const bool made = inFreshNetns([&] {
    auto rt = RouteSocket::open();
    if (!rt) return;
    missing = rt->addAddress("nosuchlink0", "198.18.0.1/32");
    (void)rt->setLinkUp("lo");
    (void)rt->addAddress("lo", "198.18.0.1/32");
    dup = rt->addAddress("lo", "198.18.0.1/32");
    bad = rt->addAddress("lo", "not-an-address");
    badFamily = rt->addAddress("lo", "aa:bb:cc:dd:ee:ff");
    noRoute = RouteSocket::waitReachable("2001:2::9", std::chrono::milliseconds(20));
  });
  if (!made) GTEST_SKIP() << "cannot make a network namespace (not root)";
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().errnum, ENODEV) << missing.error().message;
  EXPECT_NE(missing.error().message.find("nosuchlink0"), std::string::npos);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().errnum, EEXIST);
  EXPECT_NE(dup.error().message.find("RTM_NEWADDR 198.18.0.1/32 on lo"), std::string::npos);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, "invalid_argument");
  ASSERT_FALSE(badFamily.ok());
  EXPECT_EQ(badFamily.error().code, "invalid_argument");
  ASSERT_FALSE(noRoute.ok()) << "a namespace with only a loopback has no route to 2001:2::9";
  EXPECT_EQ(noRoute.error().errnum, ENETUNREACH);
}

}  // namespace
}  // namespace colo::node::netlink
