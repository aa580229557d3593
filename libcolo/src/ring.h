// Single-producer single-consumer ring over a colo_ring_header (channel_layout.h), lock-free with
// acquire/release ordering.
//
// The other side of a ring is another pod, trusted for nothing. Each side keeps its own positions
// here, in private memory, and only publishes them; every value the peer writes (its position, a
// record's length and sequence) is read once into a local, checked against the ring, and only then
// used. A value that breaks the protocol is reported as a violation, and nothing outside the ring
// is ever read or written, whatever the peer puts in the shared memory.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "colo/channel_layout.h"

namespace colo::ring {

static_assert(std::endian::native == std::endian::little, "the channel layout is little-endian");

inline constexpr std::uint64_t kRecordHeader = sizeof(colo_record_header);
inline std::uint64_t align8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }

template <class T>
std::atomic_ref<T> at(T& v) { return std::atomic_ref<T>(v); }

// A ring checked once at mapping time (channel.cpp): header 64-byte aligned, `capacity` a power of
// two, header and data inside the mapping.
struct View {
  colo_ring_header* h = nullptr;
  unsigned char* data = nullptr;
  std::uint64_t capacity = 0;
  std::uint64_t mask() const { return capacity - 1; }
  std::uint64_t maxMessage() const { return capacity / 2 - kRecordHeader; }
  // One read of a record header (length in the low half, sequence in the high half).
  std::uint64_t headerAt(std::uint64_t off) const { return at(*reinterpret_cast<std::uint64_t*>(data + off)).load(std::memory_order_relaxed); }
};

// What the peer did wrong, in words; nullptr while it behaves.
using Violation = const char*;

struct Producer {
  View r;
  std::uint64_t head = 0;      // bytes committed: ours, never read back from shared memory
  std::uint64_t produced = 0;  // messages committed
  std::uint64_t tail = 0;      // the consumer's last published position, checked
  std::uint64_t start = 0;     // where the reserved record starts

  // Space for `len` payload bytes (len <= maxMessage()), or nullptr when the ring is full for now
  // or the consumer published an impossible position (then `bad` says what).
  void* reserve(std::uint64_t len, Violation& bad) {
    const std::uint64_t t = at(r.h->tail).load(std::memory_order_acquire);
    // The consumer's position only moves forward, by whole records, and never past ours.
    if ((t & 7) != 0 || t - tail > head - tail) return bad = "its read position is outside what was written", nullptr;
    tail = t;
    const std::uint64_t need = align8(kRecordHeader + len);
    const std::uint64_t off = head & r.mask();
    const std::uint64_t skip = off + need > r.capacity ? r.capacity - off : 0;  // records never wrap
    if (head + skip + need - tail > r.capacity) return nullptr;
    if (skip) at(reinterpret_cast<colo_record_header*>(r.data + off)->length).store(COLO_RECORD_WRAP, std::memory_order_relaxed);
    start = head + skip;
    return r.data + (start & r.mask()) + kRecordHeader;
  }

  void commit(std::uint64_t len) {
    auto* rec = reinterpret_cast<colo_record_header*>(r.data + (start & r.mask()));
    ++produced;
    at(rec->length).store(static_cast<std::uint32_t>(len), std::memory_order_relaxed);
    at(rec->sequence).store(static_cast<std::uint32_t>(produced), std::memory_order_relaxed);
    head = start + align8(kRecordHeader + len);
    at(r.h->produced).store(produced, std::memory_order_relaxed);
    at(r.h->head).store(head, std::memory_order_release);
  }
};

struct Consumer {
  View r;
  std::uint64_t tail = 0;      // bytes released: ours, never read back from shared memory
  std::uint64_t consumed = 0;  // messages released
  std::uint64_t head = 0;      // the producer's last published position, checked
  std::uint64_t need = 0;      // bytes of the record handed out by peek

  // The next record's payload and length, or nullptr when the ring is empty for now or the
  // producer broke the protocol (then `bad` says what).
  const void* peek(std::uint64_t& len, Violation& bad) {
    const std::uint64_t h = at(r.h->head).load(std::memory_order_acquire);
    // The producer's position only moves forward, by whole records, at most a ring ahead of ours.
    if ((h & 7) != 0 || h - tail > r.capacity || h - tail < head - tail) return bad = "its write position is outside the ring", nullptr;
    head = h;
    if (tail == head) return nullptr;
    std::uint64_t off = tail & r.mask();
    std::uint64_t word = r.headerAt(off);
    if (static_cast<std::uint32_t>(word) == COLO_RECORD_WRAP) {
      const std::uint64_t skip = r.capacity - off;
      if (off == 0 || skip > head - tail) return bad = "a wrap marker points past what was written", nullptr;
      tail += skip;
      at(r.h->tail).store(tail, std::memory_order_release);
      if (tail == head) return bad = "a wrap marker is not followed by a record", nullptr;
      off = 0;
      word = r.headerAt(0);
    }
    const std::uint64_t length = static_cast<std::uint32_t>(word);
    const auto sequence = static_cast<std::uint32_t>(word >> 32);
    if (length > r.maxMessage()) return bad = "a record is longer than the ring allows", nullptr;
    const std::uint64_t n = align8(kRecordHeader + length);
    if (n > head - tail || off + n > r.capacity) return bad = "a record runs past what was written", nullptr;
    if (sequence != static_cast<std::uint32_t>(consumed + 1)) return bad = "a record is out of sequence", nullptr;
    need = n;
    len = length;
    return r.data + off + kRecordHeader;
  }

  void release() {
    tail += need;
    need = 0;
    ++consumed;
    at(r.h->consumed).store(consumed, std::memory_order_relaxed);
    at(r.h->tail).store(tail, std::memory_order_release);
  }
};

}  // namespace colo::ring
