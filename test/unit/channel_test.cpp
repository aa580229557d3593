// libcolo's shared-memory rings between two threads: ordering, integrity, wrap-around, backpressure.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "colo/colo.h"

namespace {

struct Channels {
  colo_channel* a = nullptr;
  colo_channel* b = nullptr;
  explicit Channels(unsigned long long bytes) { EXPECT_EQ(colo_channel_local_pair(bytes, &a, &b), COLO_OK); }
  ~Channels() {
    colo_channel_close(a);
    colo_channel_close(b);
  }
};

std::uint64_t next(std::uint64_t& x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

// Mostly small messages, some up to 4 KiB: the mix a service sees.
unsigned long sizeFor(std::uint64_t& rng) {
  const auto r = next(rng);
  return (r % 100 < 90) ? 9 + r % 120 : 9 + r % 4088;  // 8 bytes of index, then at least one pattern byte
}

TEST(Channel, TenMillionMixedMessagesArriveInOrderAndIntact) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Every access checked costs minutes for ten million; one million still wraps the 4 MiB ring
  // about 60 times. The main build runs all of them.
  constexpr std::uint64_t kMessages = 1'000'000;
#else
  constexpr std::uint64_t kMessages = 10'000'000;
#endif
  Channels ch(4 << 20);
  std::uint64_t sentSum = 0, gotSum = 0;
  std::thread producer([&] {
    std::uint64_t rng = 42;
    for (std::uint64_t i = 1; i <= kMessages; ++i) {
      const unsigned long len = sizeFor(rng);
      void* buf = nullptr;
      ASSERT_EQ(colo_channel_reserve(ch.a, len, 5000, &buf), COLO_OK) << colo_last_error();
      std::memcpy(buf, &i, 8);
      std::memset(static_cast<char*>(buf) + 8, static_cast<int>(i & 0xff), len - 8);
      ASSERT_EQ(colo_channel_commit(ch.a, len), COLO_OK);
      sentSum += i * 31 + len;
    }
  });
  std::uint64_t rng = 42;
  for (std::uint64_t i = 1; i <= kMessages; ++i) {
    const void* buf = nullptr;
    unsigned long len = 0;
    ASSERT_EQ(colo_channel_read(ch.b, 5000, &buf, &len), COLO_OK) << colo_last_error();
    ASSERT_EQ(len, sizeFor(rng)) << "message " << i;
    std::uint64_t idx;
    std::memcpy(&idx, buf, 8);
    ASSERT_EQ(idx, i);
    const auto* p = static_cast<const unsigned char*>(buf);
    ASSERT_EQ(p[len - 1], i & 0xff);
    if (i % 4096 == 0) {
      for (unsigned long k = 8; k < len; ++k) ASSERT_EQ(p[k], i & 0xff);
    }
    gotSum += idx * 31 + len;
    ASSERT_EQ(colo_channel_release(ch.b), COLO_OK);
  }
  producer.join();
  EXPECT_EQ(sentSum, gotSum);
}

TEST(Channel, BothDirectionsAndLargestMessages) {
  Channels ch(512 << 10);  // rings of 128 KiB: messages up to 64 KiB
  const unsigned long max = colo_channel_max_message(ch.a);
  ASSERT_GT(max, 60000u);
  std::thread echo([&] {
    for (int i = 0; i < 200; ++i) {
      const void* in = nullptr;
      unsigned long len = 0;
      ASSERT_EQ(colo_channel_read(ch.b, 5000, &in, &len), COLO_OK);
      void* out = nullptr;
      ASSERT_EQ(colo_channel_reserve(ch.b, len, 5000, &out), COLO_OK);
      std::memcpy(out, in, len);
      ASSERT_EQ(colo_channel_release(ch.b), COLO_OK);
      ASSERT_EQ(colo_channel_commit(ch.b, len), COLO_OK);
    }
  });
  for (int i = 0; i < 200; ++i) {
    const unsigned long len = (i % 2) ? max : 1 + static_cast<unsigned long>(i) * 97 % 5000;
    void* out = nullptr;
    ASSERT_EQ(colo_channel_reserve(ch.a, len, 5000, &out), COLO_OK);
    std::memset(out, i, len);
    ASSERT_EQ(colo_channel_commit(ch.a, len), COLO_OK);
    const void* in = nullptr;
    unsigned long got = 0;
    ASSERT_EQ(colo_channel_read(ch.a, 5000, &in, &got), COLO_OK);
    ASSERT_EQ(got, len);
    ASSERT_EQ(static_cast<const unsigned char*>(in)[len - 1], static_cast<unsigned char>(i));
    ASSERT_EQ(colo_channel_release(ch.a), COLO_OK);
  }
  echo.join();
}

// The producer marks the slot where its next record will end if that record is as long as the
// last one. A commit shorter than its reservation may end exactly there while the application's
// bytes ran over that mark: the slot after the record must still read as empty, not as whatever
// the application wrote (here, a plausible header of the next message).
TEST(Channel, AShortCommitOverTheMarkLeftAheadStillEndsInAnEmptySlot) {
  Channels ch(1 << 20);
  const void* in = nullptr;
  unsigned long len = 0;
  ASSERT_EQ(colo_channel_read(ch.b, 0, &in, &len), COLO_E_TIMEOUT);  // the reader now waits on record headers
  void* out = nullptr;
  ASSERT_EQ(colo_channel_reserve(ch.a, 64, 1000, &out), COLO_OK);
  std::memset(out, 1, 64);
  ASSERT_EQ(colo_channel_commit(ch.a, 64), COLO_OK);  // record 1 at 0..72, mark at 72, mark ahead at 144
  ASSERT_EQ(colo_channel_reserve(ch.a, 200, 1000, &out), COLO_OK);
  std::memset(out, 2, 200);
  const std::uint64_t fake = 8 | std::uint64_t{3} << 32;  // length 8, sequence 3
  std::memcpy(static_cast<char*>(out) + 64, &fake, 8);    // at 72 + 8 + 64 = 144
  ASSERT_EQ(colo_channel_commit(ch.a, 64), COLO_OK);      // record 2 at 72..144
  for (int i = 1; i <= 2; ++i) {
    ASSERT_EQ(colo_channel_read(ch.b, 1000, &in, &len), COLO_OK) << colo_last_error();
    ASSERT_EQ(len, 64u);
    ASSERT_EQ(static_cast<const unsigned char*>(in)[0], i);
    ASSERT_EQ(colo_channel_release(ch.b), COLO_OK);
  }
  EXPECT_EQ(colo_channel_read(ch.b, 0, &in, &len), COLO_E_TIMEOUT);
}

TEST(Channel, FullRingTimesOutAndEmptyRingTimesOut) {
  Channels ch(64 << 10);
  void* buf = nullptr;
  int rc = COLO_OK;
  int sent = 0;
  while ((rc = colo_channel_reserve(ch.a, 1000, 20, &buf)) == COLO_OK) {
    colo_channel_commit(ch.a, 1000);
    ++sent;
  }
  EXPECT_EQ(rc, COLO_E_TIMEOUT);
  EXPECT_GT(sent, 10);
  const void* in = nullptr;
  unsigned long len = 0;
  EXPECT_EQ(colo_channel_read(ch.a, 20, &in, &len), COLO_E_TIMEOUT);  // nothing came the other way
  EXPECT_EQ(colo_channel_reserve(ch.a, colo_channel_max_message(ch.a) + 1, 20, &buf), COLO_E_INVALID);
}

// A side that has parked on its doorbell is woken by the other side's commit or release, whatever
// the moment: the delays straddle the spin-then-park boundary (50 us), where a lost wake-up would
// turn into a 2 s timeout.
TEST(Channel, ParkedSidesAreWokenAtEveryMoment) {
  Channels ch(64 << 10);
  std::uint64_t rng = 7;
  std::thread peer([&] {
    for (int i = 0; i < 300; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(next(rng) % 200));
      void* out = nullptr;
      ASSERT_EQ(colo_channel_reserve(ch.a, 8, 2000, &out), COLO_OK) << colo_last_error();
      std::memcpy(out, &i, sizeof(i));
      ASSERT_EQ(colo_channel_commit(ch.a, 8), COLO_OK);
    }
  });
  for (int i = 0; i < 300; ++i) {
    const void* in = nullptr;
    unsigned long len = 0;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(colo_channel_read(ch.b, 2000, &in, &len), COLO_OK) << "message " << i << ": " << colo_last_error();
    // A lost wake-up still finds the message once the wait times out: so check it did not.
    ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000)) << "message " << i;
    int got;
    std::memcpy(&got, in, sizeof(got));
    ASSERT_EQ(got, i);
    ASSERT_EQ(colo_channel_release(ch.b), COLO_OK);
  }
  peer.join();
  // The other way round: a producer parked on a full ring, woken by releases.
  const unsigned long big = colo_channel_max_message(ch.a);
  std::thread reader([&] {
    for (int i = 0; i < 100; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(next(rng) % 200));
      const void* in = nullptr;
      unsigned long len = 0;
      ASSERT_EQ(colo_channel_read(ch.b, 2000, &in, &len), COLO_OK) << colo_last_error();
      ASSERT_EQ(colo_channel_release(ch.b), COLO_OK);
    }
  });
  for (int i = 0; i < 100; ++i) {  // two such messages fill the ring: every other one waits
    void* out = nullptr;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(colo_channel_reserve(ch.a, big, 2000, &out), COLO_OK) << "message " << i << ": " << colo_last_error();
    ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000)) << "message " << i;
    ASSERT_EQ(colo_channel_commit(ch.a, big), COLO_OK);
  }
  reader.join();
}

}  // namespace
