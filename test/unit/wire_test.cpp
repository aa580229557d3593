// The wire codec fed good and bad frames over a real SOCK_SEQPACKET pair.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "colo/common/netns.h"
#include "colo/common/wire.h"

namespace colo::wire {
namespace {

struct Pair {
  UniqueFd a, b;
  Pair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
};

TEST(Wire, RoundTripWithDescriptor) {
  Pair p;
  UniqueFd f(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int fds[] = {f.get()};
  ASSERT_TRUE(send(p.a.get(), {{"v", 1}, {"id", 7}, {"op", "x"}}, fds).ok());
  auto m = recv(p.b.get());
  ASSERT_TRUE(m.ok()) << m.error().str();
  EXPECT_EQ(m->body["id"], 7);
  ASSERT_EQ(m->fds.size(), 1u);
  EXPECT_GE(m->fds[0].get(), 0);
  EXPECT_NE(::fcntl(m->fds[0].get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(Wire, BadFrames) {
  Pair p;
  for (const std::string frame : std::vector<std::string>{"not json", "[1,2]", "\"str\"", "{", std::string("\0\0\0", 3)}) {
    ASSERT_EQ(::send(p.a.get(), frame.data(), frame.size(), 0), static_cast<ssize_t>(frame.size()));
    auto m = recv(p.b.get());
    ASSERT_FALSE(m.ok()) << frame;
    EXPECT_EQ(m.error().code, std::string(proto::name(proto::ErrorCode::BadRequest)));
  }
}

TEST(Wire, OversizedFrameIsRefusedAndItsDescriptorsClosed) {
  Pair p;
  int sndbuf = 1 << 20;
  ::setsockopt(p.a.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  ::setsockopt(p.b.get(), SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
  const std::string big(kMaxMessage + 100, 'x');
  ASSERT_EQ(::send(p.a.get(), big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  auto m = recv(p.b.get());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, std::string(proto::name(proto::ErrorCode::TooLarge)));
  // The socket still works for the next message.
  ASSERT_TRUE(send(p.a.get(), {{"v", 1}, {"id", 1}, {"op", "y"}}).ok());
  EXPECT_TRUE(recv(p.b.get()).ok());
  // And send refuses to produce one.
  EXPECT_EQ(send(p.a.get(), {{"blob", big}}).error().code, std::string(proto::name(proto::ErrorCode::TooLarge)));
}

TEST(Wire, PeerClosed) {
  Pair p;
  p.a.reset();
  auto m = recv(p.b.get());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, "closed");
}

TEST(Wire, ValidateEnvelope) {
  EXPECT_TRUE(validateRequest({{"v", 1}, {"id", 1}, {"op", "cni.add"}}).ok());
  EXPECT_EQ(validateRequest({{"v", 2}, {"id", 1}, {"op", "a"}}).error().code, std::string(proto::name(proto::ErrorCode::UnsupportedVersion)));
  EXPECT_EQ(validateRequest({{"id", 1}, {"op", "a"}}).error().code, std::string(proto::name(proto::ErrorCode::BadRequest)));
  EXPECT_EQ(validateRequest({{"v", 1}, {"op", "a"}}).error().code, std::string(proto::name(proto::ErrorCode::BadRequest)));
  EXPECT_EQ(validateRequest({{"v", 1}, {"id", -1}, {"op", "a"}}).error().code, std::string(proto::name(proto::ErrorCode::BadRequest)));
  EXPECT_EQ(validateRequest({{"v", 1}, {"id", 1}, {"op", 3}}).error().code, std::string(proto::name(proto::ErrorCode::BadRequest)));
}

TEST(Wire, CallTimesOutWithoutReply) {
  Pair p;
  auto r = call(p.a.get(), {{"v", 1}, {"id", 1}, {"op", "x"}}, {}, std::chrono::milliseconds(50));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "timeout");
}

TEST(Netns, InspectRefusesWhatIsNotANetns) {
  UniqueFd f(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(netns::inspect(f.get()).error().code, "bad_netns");
  auto self = netns::open("/proc/self/ns/net");
  ASSERT_TRUE(self.ok());
  auto id = netns::inspect(self->get());
  ASSERT_TRUE(id.ok());
  // The cookie read by entering the netns is the one a socket made here carries.
  UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(static_cast<bool>(sock));
  EXPECT_NE(id->cookie, 0u);
  EXPECT_EQ(id->cookie, netns::socketCookie(sock.get()));
  auto mnt = netns::open("/proc/self/ns/uts");
  ASSERT_TRUE(mnt.ok());
  EXPECT_EQ(netns::inspect(mnt->get()).error().code, "bad_netns");
}

}  // namespace
}  // namespace colo::wire
