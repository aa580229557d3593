// A hostile or broken peer on the other end of a channel: the test plays side 0, hands libcolo a
// segment over a socket pair as a real peer would, then writes into the shared memory what a
// peer must not (impossible positions, lengths, sequences, segment headers). libcolo must answer
// each with COLO_E_UNAVAILABLE ("the peer went away: it broke the channel protocol"), keep failing
// afterwards, and never read or write outside the segment (the ASan build checks that part).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "colo/channel_layout.h"
#include "colo/colo.h"

namespace {

constexpr std::uint64_t kBytes = 64 << 10;

void sendOffer(int sock, const int (&fds)[3], std::uint64_t bytes) {
  char tag[9] = {'C'};
  std::memcpy(tag + 1, &bytes, 8);
  iovec iov{tag, sizeof(tag)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(fds))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(fds));
  std::memcpy(CMSG_DATA(c), fds, sizeof(fds));
  ASSERT_EQ(::sendmsg(sock, &m, 0), static_cast<ssize_t>(sizeof(tag)));
}

// Side 0, played by the test: it owns the memory and writes whatever it likes into it.
struct HostilePeer {
  int pair[2] = {-1, -1};
  int mem = -1, bell0 = -1, bell1 = -1;
  unsigned char* base = nullptr;
  std::uint64_t size = kBytes;
  colo_channel* victim = nullptr;  // side 1, libcolo

  std::uint64_t offered = kBytes;  // what the offer says

  // Memory and bells as colo-node makes them: sealed against shrink and grow, a socketpair.
  // `seals` and `eventfds` make the weaker kinds a hostile peer could pass instead.
  explicit HostilePeer(std::uint64_t bytes = kBytes, int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, bool eventfds = false)
      : size(bytes), offered(bytes) {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    mem = ::memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    EXPECT_EQ(::ftruncate(mem, static_cast<off_t>(size)), 0);
    base = static_cast<unsigned char*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, mem, 0));
    EXPECT_NE(base, MAP_FAILED);
    EXPECT_NE(colo_channel_layout_init(base, size), 0u);
    if (seals) EXPECT_EQ(::fcntl(mem, F_ADD_SEALS, seals), 0);
    if (eventfds) {
      bell0 = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      bell1 = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    } else {
      int sv[2];
      EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
      bell0 = sv[0];
      bell1 = sv[1];
    }
  }
  ~HostilePeer() {
    colo_channel_close(victim);
    ::munmap(base, size);
    for (int fd : {pair[0], pair[1], mem, bell0, bell1}) ::close(fd);
  }
  int hand(colo_channel** out) {
    sendOffer(pair[0], {mem, bell0, bell1}, offered);
    return colo_channel_accept(pair[1], 1000, out);
  }
  void handOver() { ASSERT_EQ(hand(&victim), COLO_OK) << colo_last_error(); }

  colo_segment_header& segment() { return *reinterpret_cast<colo_segment_header*>(base); }
  colo_ring_header& ring(int i) { return *reinterpret_cast<colo_ring_header*>(base + segment().ring_offset[i]); }
  unsigned char* data(int i) { return reinterpret_cast<unsigned char*>(&ring(i) + 1); }
  // A record as an honest side 0 would write it into ring 0, without publishing it.
  void record(std::uint64_t off, std::uint32_t length, std::uint32_t sequence) {
    std::memcpy(data(0) + off, &length, 4);
    std::memcpy(data(0) + off + 4, &sequence, 4);
  }
  void publish(std::uint64_t head) { std::atomic_ref<std::uint64_t>(ring(0).head).store(head); }
};

// A read that the peer's memory makes impossible: the peer counts as gone, with the reason.
void expectBroken(colo_channel* ch, const char* why) {
  const void* in = nullptr;
  unsigned long len = 0;
  EXPECT_EQ(colo_channel_read(ch, 100, &in, &len), COLO_E_UNAVAILABLE);
  const std::string err = colo_last_error();
  EXPECT_NE(err.find("broke the channel protocol"), std::string::npos) << err;
  EXPECT_NE(err.find(why), std::string::npos) << err;
  // Dead from then on, in both directions.
  EXPECT_EQ(colo_channel_read(ch, 0, &in, &len), COLO_E_UNAVAILABLE);
  void* out = nullptr;
  EXPECT_EQ(colo_channel_reserve(ch, 8, 0, &out), COLO_E_UNAVAILABLE);
  EXPECT_EQ(colo_channel_commit(ch, 0), COLO_E_UNAVAILABLE);
  EXPECT_EQ(colo_channel_release(ch), COLO_E_UNAVAILABLE);
}

TEST(ChannelPeer, AnHonestPeerIsReadNormally) {
  HostilePeer p;
  p.handOver();
  p.record(0, 5, 1);
  std::memcpy(p.data(0) + 8, "hello", 5);
  p.publish(16);
  const void* in = nullptr;
  unsigned long len = 0;
  ASSERT_EQ(colo_channel_read(p.victim, 100, &in, &len), COLO_OK) << colo_last_error();
  EXPECT_EQ(std::string(static_cast<const char*>(in), len), "hello");
  EXPECT_EQ(colo_channel_release(p.victim), COLO_OK);
  EXPECT_EQ(colo_channel_read(p.victim, 10, &in, &len), COLO_E_TIMEOUT);
}

TEST(ChannelPeer, WritePositionBeyondTheRing) {
  HostilePeer p;
  p.handOver();
  p.publish(p.segment().ring_capacity + 8);
  expectBroken(p.victim, "write position");
}

TEST(ChannelPeer, WritePositionNotOnARecordBoundary) {
  HostilePeer p;
  p.handOver();
  p.publish(3);
  expectBroken(p.victim, "write position");
}

TEST(ChannelPeer, WritePositionMovingBackwards) {
  HostilePeer p;
  p.handOver();
  p.record(0, 8, 1);
  p.publish(16);
  const void* in = nullptr;
  unsigned long len = 0;
  ASSERT_EQ(colo_channel_read(p.victim, 100, &in, &len), COLO_OK);
  ASSERT_EQ(colo_channel_release(p.victim), COLO_OK);
  p.publish(8);  // behind what the victim has already read
  expectBroken(p.victim, "write position");
}

TEST(ChannelPeer, RecordLongerThanTheRing) {
  HostilePeer p;
  p.handOver();
  p.record(0, 0x7fffffff, 1);
  p.publish(16);
  expectBroken(p.victim, "longer than the ring");
}

TEST(ChannelPeer, RecordRunningPastWhatWasWritten) {
  HostilePeer p;
  p.handOver();
  p.record(0, 4096, 1);
  p.publish(16);
  expectBroken(p.victim, "past what was written");
}

TEST(ChannelPeer, RecordRunningPastTheEndOfTheRing) {
  HostilePeer p;
  p.handOver();
  const std::uint64_t cap = p.segment().ring_capacity;
  // Fill up to 64 bytes before the end with one legal record, then one that would straddle it.
  p.record(0, static_cast<std::uint32_t>(cap / 2 - 8), 1);
  p.record(cap / 2, static_cast<std::uint32_t>(cap / 2 - 72), 2);
  p.record(cap - 64, 1000, 3);
  p.publish(cap - 64);
  for (int i = 0; i < 2; ++i) {
    const void* in = nullptr;
    unsigned long len = 0;
    ASSERT_EQ(colo_channel_read(p.victim, 100, &in, &len), COLO_OK) << colo_last_error();
    ASSERT_EQ(colo_channel_release(p.victim), COLO_OK);
  }
  p.publish(cap - 64 + 1008);  // as much as the record claims, but it would cross the end
  expectBroken(p.victim, "past what was written");
}

TEST(ChannelPeer, RecordOutOfSequence) {
  HostilePeer p;
  p.handOver();
  p.record(0, 8, 7);
  p.publish(16);
  expectBroken(p.victim, "out of sequence");
}

TEST(ChannelPeer, WrapMarkerAtTheStartOfTheRing) {
  HostilePeer p;
  p.handOver();
  p.record(0, COLO_RECORD_WRAP, 1);
  p.publish(16);
  expectBroken(p.victim, "wrap marker");
}

TEST(ChannelPeer, WrapMarkerPastWhatWasWritten) {
  HostilePeer p;
  p.handOver();
  p.record(0, 56, 1);
  p.record(64, COLO_RECORD_WRAP, 2);
  p.publish(72);
  const void* in = nullptr;
  unsigned long len = 0;
  ASSERT_EQ(colo_channel_read(p.victim, 100, &in, &len), COLO_OK);
  ASSERT_EQ(colo_channel_release(p.victim), COLO_OK);
  expectBroken(p.victim, "wrap marker");
}

TEST(ChannelPeer, ReadPositionOutsideWhatWasWritten) {
  HostilePeer p;
  p.handOver();
  // The victim writes into ring 1; the peer, its consumer, claims to have read more than that.
  // It is read when the ring looks full, so the victim writes until then.
  std::atomic_ref<std::uint64_t>(p.ring(1).tail).store(1 << 20);
  void* out = nullptr;
  int rc = COLO_OK;
  for (int i = 0; i < 1000 && (rc = colo_channel_reserve(p.victim, 1000, 100, &out)) == COLO_OK; ++i) ASSERT_EQ(colo_channel_commit(p.victim, 1000), COLO_OK);
  EXPECT_EQ(rc, COLO_E_UNAVAILABLE);
  EXPECT_NE(std::string(colo_last_error()).find("read position"), std::string::npos) << colo_last_error();
  EXPECT_EQ(colo_channel_reserve(p.victim, 8, 0, &out), COLO_E_UNAVAILABLE);
}

// A producer that marks empty slots (libcolo does) lets the consumer wait on record headers; the
// same checks hold there, without `head` to bound them.
struct MarkingPeer : HostilePeer {
  MarkingPeer() {
    std::uint64_t empty = COLO_RECORD_EMPTY;
    std::memcpy(data(0), &empty, 8);
    std::atomic_ref<std::uint32_t>(ring(0).producer_flags).store(COLO_RING_MARKS);
    handOver();
  }
  void mark(std::uint64_t off) { record(off, COLO_RECORD_EMPTY, 0); }
};

TEST(ChannelPeer, MarkedRecordsAreReadWithoutHead) {
  MarkingPeer p;
  const void* in = nullptr;
  unsigned long len = 0;
  EXPECT_EQ(colo_channel_read(p.victim, 10, &in, &len), COLO_E_TIMEOUT);  // an empty mark: nothing yet
  p.mark(16);
  std::memcpy(p.data(0) + 8, "hello", 5);
  p.record(0, 5, 1);  // no head published at all
  ASSERT_EQ(colo_channel_read(p.victim, 100, &in, &len), COLO_OK) << colo_last_error();
  EXPECT_EQ(std::string(static_cast<const char*>(in), len), "hello");
  ASSERT_EQ(colo_channel_release(p.victim), COLO_OK);
  EXPECT_EQ(colo_channel_read(p.victim, 10, &in, &len), COLO_E_TIMEOUT);
}

TEST(ChannelPeer, MarkedRecordsAreChecked) {
  {
    MarkingPeer p;
    p.record(0, 0x7fffffff, 1);
    expectBroken(p.victim, "longer than the ring");
  }
  {
    MarkingPeer p;
    p.record(0, 8, 9);
    expectBroken(p.victim, "out of sequence");
  }
  {
    MarkingPeer p;
    p.record(0, COLO_RECORD_WRAP, 1);
    expectBroken(p.victim, "wrap marker");
  }
  {
    MarkingPeer p;
    const std::uint64_t cap = p.segment().ring_capacity;
    p.mark(cap / 2 + 64);
    p.record(cap / 2, 56, 2);
    p.record(0, static_cast<std::uint32_t>(cap / 2 - 8), 1);
    for (int i = 0; i < 2; ++i) {
      const void* in = nullptr;
      unsigned long len = 0;
      ASSERT_EQ(colo_channel_read(p.victim, 100, &in, &len), COLO_OK) << colo_last_error();
      ASSERT_EQ(colo_channel_release(p.victim), COLO_OK);
    }
    p.record(cap / 2 + 64, static_cast<std::uint32_t>(cap / 2 - 8), 3);  // would end 64 bytes past the ring
    expectBroken(p.victim, "past what was written");
  }
}

// The segment header is the agent's, but the peer maps it writable too and may hand over its own.
TEST(ChannelPeer, SegmentHeadersThatDoNotFitTheMemoryAreRefused) {
  const auto refused = [](auto&& spoil) {
    HostilePeer p;
    spoil(p);
    colo_channel* ch = nullptr;
    EXPECT_EQ(p.hand(&ch), COLO_E_PROTOCOL);
    EXPECT_EQ(ch, nullptr);
    return std::string(colo_last_error());
  };
  EXPECT_NE(refused([](HostilePeer& p) { p.segment().magic = 0; }).find("no colo segment header"), std::string::npos);
  EXPECT_NE(refused([](HostilePeer& p) { p.segment().ring_capacity = 3 << 12; }).find("power of two"), std::string::npos);
  EXPECT_NE(refused([](HostilePeer& p) { p.segment().ring_capacity = std::uint64_t{1} << 40; }).find("power of two"), std::string::npos);
  EXPECT_NE(refused([](HostilePeer& p) { p.segment().ring_capacity = 65536; }).find("outside the channel memory"), std::string::npos);
  EXPECT_NE(refused([](HostilePeer& p) { p.segment().ring_offset[1] = ~std::uint64_t{0} - 63; }).find("outside"), std::string::npos);
  EXPECT_NE(refused([](HostilePeer& p) { p.segment().ring_offset[0] = 8; }).find("outside"), std::string::npos);
  EXPECT_NE(refused([](HostilePeer& p) { p.segment().ring_offset[0] += 4; }).find("outside"), std::string::npos);
  EXPECT_NE(refused([](HostilePeer& p) { p.segment().ring_offset[1] = p.segment().ring_offset[0] + 64; }).find("overlap"), std::string::npos);
}

TEST(ChannelPeer, MemoryThatIsNotAFileIsRefused) {
  HostilePeer p;
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  sendOffer(p.pair[0], {fds[0], p.bell0, p.bell1}, p.size);
  colo_channel* ch = nullptr;
  EXPECT_EQ(colo_channel_accept(p.pair[1], 1000, &ch), COLO_E_PROTOCOL);
  EXPECT_NE(std::string(colo_last_error()).find("not a memory file"), std::string::npos);
  ::close(fds[0]);
  ::close(fds[1]);
}

// A peer that scribbles over the whole segment while the victim reads and writes: every call
// ends in OK, a timeout or "the peer went away", never a crash, and once gone it stays gone.
TEST(ChannelPeer, ScribblingPeerNeverCrashesTheOtherSide) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the peer racing the reader on the payload is what this test is about";
#endif
  for (int trial = 0; trial < 20; ++trial) {
    HostilePeer p;
    p.handOver();
    std::atomic<bool> stop{false};
    auto* head0 = &p.ring(0).head;  // before the scribbling starts: the segment header goes too
    std::thread scribbler([&] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(trial));
      auto* words = reinterpret_cast<std::uint64_t*>(p.base);
      const std::uint64_t n = p.size / 8;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::uint64_t v = rng();
        // Mostly small values (plausible positions and lengths), sometimes anything.
        std::atomic_ref<std::uint64_t>(words[rng() % n]).store((v & 3) ? v % 256 * 8 : v, std::memory_order_release);
        std::atomic_ref<std::uint64_t>(*head0).store(rng() % 512 * 8, std::memory_order_release);
      }
    });
    bool gone = false;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(30);
    while (std::chrono::steady_clock::now() < end) {
      const void* in = nullptr;
      unsigned long len = 0;
      int rc = colo_channel_read(p.victim, 0, &in, &len);
      ASSERT_TRUE(rc == COLO_OK || rc == COLO_E_TIMEOUT || rc == COLO_E_UNAVAILABLE) << rc;
      if (rc == COLO_OK) {
        volatile unsigned char sink = 0;
        for (unsigned long i = 0; i < len; ++i) sink = sink + static_cast<const unsigned char*>(in)[i];
        ASSERT_EQ(colo_channel_release(p.victim), COLO_OK);
      }
      ASSERT_FALSE(gone && rc != COLO_E_UNAVAILABLE);
      gone = gone || rc == COLO_E_UNAVAILABLE;
      void* out = nullptr;
      rc = colo_channel_reserve(p.victim, 64, 0, &out);
      ASSERT_TRUE(rc == COLO_OK || rc == COLO_E_TIMEOUT || rc == COLO_E_UNAVAILABLE) << rc;
      if (rc == COLO_OK) {
        std::memset(out, 0x5a, 64);
        ASSERT_EQ(colo_channel_commit(p.victim, 64), COLO_OK);
      }
      gone = gone || rc == COLO_E_UNAVAILABLE;
    }
    stop = true;
    scribbler.join();
  }
}

// What a hostile peer could hand over is refused before anything is mapped (the tester's
// "truncate" and "bell-block" attacks, and the 2 GiB sparse segment).
void expectRefused(HostilePeer& p, const char* why) {
  colo_channel* ch = nullptr;
  EXPECT_EQ(p.hand(&ch), COLO_E_PROTOCOL);
  EXPECT_EQ(ch, nullptr);
  EXPECT_NE(std::string(colo_last_error()).find(why), std::string::npos) << colo_last_error();
  colo_channel_close(ch);
}

TEST(ChannelPeer, MemoryThatCanShrinkIsRefused) {
  HostilePeer unsealed(kBytes, 0);
  expectRefused(unsealed, "not sealed");
  HostilePeer shrinkOnly(kBytes, F_SEAL_SHRINK);
  expectRefused(shrinkOnly, "not sealed");
}

// Memory we could not map for writing is the peer's fault: a protocol error, not an internal one.
TEST(ChannelPeer, MemorySealedAgainstWritingIsRefused) {
  HostilePeer futureWrite(kBytes, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE);
  expectRefused(futureWrite, "sealed against writing");
}

TEST(ChannelPeer, MemoryOfAnotherSizeThanOfferedIsRefused) {
  HostilePeer p;
  p.offered = 2 * kBytes;
  expectRefused(p, "offer said");
}

TEST(ChannelPeer, MemoryOutsideTheSizeRangeIsRefused) {
  // 16 bytes, and 2 GiB sparse (must not be mapped, let alone populated), both sealed and offered.
  for (const off_t size : {off_t{16}, off_t{2} << 30}) {
    HostilePeer p;
    int other = ::memfd_create("other", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ASSERT_EQ(::ftruncate(other, size), 0);
    ASSERT_EQ(::fcntl(other, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    ::dup2(other, p.mem);
    ::close(other);
    p.offered = static_cast<std::uint64_t>(size);
    expectRefused(p, "outside 64 KiB to 1 GiB");
  }
}

TEST(ChannelPeer, BellsThatAreNotUnixStreamSocketsAreRefused) {
  HostilePeer eventfds(kBytes, F_SEAL_SHRINK | F_SEAL_GROW, true);
  expectRefused(eventfds, "doorbell");
  HostilePeer pipes;
  int pp[2];
  ASSERT_EQ(::pipe2(pp, O_CLOEXEC | O_NONBLOCK), 0);
  ::dup2(pp[0], pipes.bell0);
  ::dup2(pp[1], pipes.bell1);
  ::close(pp[0]);
  ::close(pp[1]);
  expectRefused(pipes, "doorbell");
}

TEST(ChannelPeer, ASealedSegmentCannotBeShrunk) {
  HostilePeer p;
  p.handOver();
  EXPECT_NE(::ftruncate(p.mem, 0), 0);
  EXPECT_EQ(errno, EPERM);
  void* out = nullptr;
  ASSERT_EQ(colo_channel_reserve(p.victim, 64, 100, &out), COLO_OK);
  std::memset(out, 'z', 64);  // would be SIGBUS had the peer shrunk it
  EXPECT_EQ(colo_channel_commit(p.victim, 64), COLO_OK);
}

// The peer shares our end of the bell socketpair: it clears O_NONBLOCK and fills the queue. A
// commit that rings must still return at once (EAGAIN = a wake-up is already pending).
TEST(ChannelPeer, BellBlockAttackDoesNotBlockACommit) {
  HostilePeer p;
  p.handOver();
  ASSERT_EQ(::fcntl(p.bell1, F_SETFL, ::fcntl(p.bell1, F_GETFL) & ~O_NONBLOCK), 0);
  char junk[4096] = {};
  while (::send(p.bell1, junk, sizeof(junk), MSG_DONTWAIT) > 0) {
  }
  std::atomic_ref<std::uint32_t>(p.ring(1).consumer_sleeping).store(1);  // "side 0 sleeps": the victim rings
  std::atomic<bool> done{false};
  std::thread t([&] {
    void* out = nullptr;
    if (colo_channel_reserve(p.victim, 8, 100, &out) == COLO_OK) colo_channel_commit(p.victim, 8);
    done = true;
  });
  for (int i = 0; i < 500 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(done) << "a commit blocked on the doorbell";
  if (!done) ::shutdown(p.bell1, SHUT_RDWR);  // unblock it so the test can end
  t.join();
}

// After a read said "the peer went away", a send fails the same way (not OK into a dead ring).
TEST(ChannelPeer, SendAfterThePeerWentAwayFails) {
  HostilePeer p;
  p.handOver();
  ::close(p.pair[0]);
  p.pair[0] = -1;
  const void* in = nullptr;
  unsigned long len = 0;
  ASSERT_EQ(colo_channel_read(p.victim, 2000, &in, &len), COLO_E_UNAVAILABLE);
  void* out = nullptr;
  EXPECT_EQ(colo_channel_reserve(p.victim, 8, 0, &out), COLO_E_UNAVAILABLE);
  EXPECT_EQ(colo_channel_commit(p.victim, 0), COLO_E_UNAVAILABLE);
}

}  // namespace
