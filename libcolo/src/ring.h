// Single-producer single-consumer ring over a colo_ring_header (channel_layout.h), lock-free with
// acquire/release ordering.
//
// The other side of a ring is another pod, trusted for nothing. Each side keeps its own positions
// here, in private memory, and only publishes them; every value the peer writes (its position, a
// record's length and sequence) is read once into a local, checked against the ring, and only then
// used. A value that breaks the protocol is reported as a violation, and nothing outside the ring
// is ever read or written, whatever the peer puts in the shared memory.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "colo/channel_layout.h"

namespace colo::ring {

static_assert(std::endian::native == std::endian::little, "the channel layout is little-endian");

inline constexpr std::uint64_t kRecordHeader = sizeof(colo_record_header);
inline constexpr std::uint64_t kEmptyMark = COLO_RECORD_EMPTY;
inline constexpr std::uint64_t kWrapMark = COLO_RECORD_WRAP;
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
  std::uint64_t headerAt(std::uint64_t off, std::memory_order o = std::memory_order_relaxed) const {
    return at(*reinterpret_cast<std::uint64_t*>(data + off)).load(o);
  }
  void setHeader(std::uint64_t off, std::uint64_t word, std::memory_order o) { at(*reinterpret_cast<std::uint64_t*>(data + off)).store(word, o); }
};

// What the peer did wrong, in words; nullptr while it behaves.
using Violation = const char*;

struct Producer {
  View r;
  std::uint64_t head = 0;      // bytes committed: ours, never read back from shared memory
  std::uint64_t produced = 0;  // messages committed
  std::uint64_t tail = 0;      // the consumer's last published position, checked
  std::uint64_t start = 0;     // where the reserved record starts
  std::uint64_t skip = 0;      // bytes skipped before it (the end of the ring)
  std::uint64_t reserved = 0;  // padded size of the reserved record
  std::uint64_t marked = 0;    // a position past head where the last commit left an empty mark (0: none)

  // Marks: the first slot is empty, and every record will be followed by an empty mark, so that a
  // consumer can wait on the record header itself (one cache line) instead of on `head`.
  void announceMarks() {
    r.setHeader(0, kEmptyMark, std::memory_order_relaxed);
    at(r.h->producer_flags).store(COLO_RING_MARKS, std::memory_order_release);
  }

  // Space for `len` payload bytes (len <= maxMessage()), or nullptr when the ring is full for now
  // or the consumer published an impossible position (then `bad` says what).
  void* reserve(std::uint64_t len, Violation& bad) {
    const std::uint64_t need = align8(kRecordHeader + len) + kRecordHeader;  // with the mark after it
    const std::uint64_t off = head & r.mask();
    skip = off + need - kRecordHeader > r.capacity ? r.capacity - off : 0;  // records never wrap
    // The consumer's position is read only when the last one seen says the ring is full: it is
    // the line the consumer writes, so reading it costs a transfer between CPUs.
    if (head + skip + need - tail > r.capacity) {
      const std::uint64_t t = at(r.h->tail).load(std::memory_order_acquire);
      // The consumer's position only moves forward, by whole records, and never past ours.
      if ((t & 7) != 0 || t - tail > head - tail) return bad = "its read position is outside what was written", nullptr;
      tail = t;
      if (head + skip + need - tail > r.capacity) return nullptr;
    }
    start = head + skip;
    reserved = align8(kRecordHeader + len);
    return r.data + (start & r.mask()) + kRecordHeader;
  }

  // Publishes the record: the mark after it, then its header (release: a consumer waiting on the
  // header sees the payload and the mark), then a skip marker if it went to the start of the
  // ring (after the record, for the same reason), then `head` for consumers that wait on it.
  // Then it marks where the next record will end if it is as long as this one (marked ahead, in
  // free space no consumer reads yet): that mark's line is then fetched while the peer answers,
  // not in front of the next header's store (stores leave a CPU in order, so a mark that has to
  // fetch its line delays the header behind it: 0.23 -> 0.16 us per 64 B round trip).
  void commit(std::uint64_t len) {
    const std::uint64_t n = align8(kRecordHeader + len);
    ++produced;
    // The mark left ahead is still whole only if the application's bytes stopped before it.
    if (start + n != marked || n != reserved) r.setHeader((start + n) & r.mask(), kEmptyMark, std::memory_order_relaxed);
    r.setHeader(start & r.mask(), len | (produced & 0xffffffffu) << 32, std::memory_order_release);
    if (skip) r.setHeader(head & r.mask(), kWrapMark, std::memory_order_release);
    head = start + n;
    at(r.h->produced).store(produced, std::memory_order_relaxed);
    at(r.h->head).store(head, std::memory_order_release);
    markAhead(n);
  }

 private:
  // An empty mark at head + n, when those 8 bytes lie before the end of the ring and in space the
  // consumer has released (as far as we last saw).
  void markAhead(std::uint64_t n) {
    const std::uint64_t p = head + n;
    marked = 0;
    if ((p & r.mask()) + kRecordHeader > r.capacity || p + kRecordHeader - tail > r.capacity) return;
    r.setHeader(p & r.mask(), kEmptyMark, std::memory_order_relaxed);
    marked = p;
  }
};

struct Consumer {
  View r;
  std::uint64_t tail = 0;      // bytes released: ours, never read back from shared memory
  std::uint64_t consumed = 0;  // messages released
  std::uint64_t head = 0;      // the producer's last published position, checked
  std::uint64_t need = 0;      // bytes of the record handed out by peek
  bool marks = false;          // the producer marks empty slots: wait on record headers

  // The next record's payload and length, or nullptr when the ring is empty for now or the
  // producer broke the protocol (then `bad` says what).
  const void* peek(std::uint64_t& len, Violation& bad) { return marks ? peekMarked(len, bad) : peekHead(len, bad); }

  void release() {
    tail += need;
    need = 0;
    ++consumed;
    at(r.h->consumed).store(consumed, std::memory_order_relaxed);
    at(r.h->tail).store(tail, std::memory_order_release);
  }

 private:
  // With marks, the header at our position is the only thing to watch: an empty mark, a skip
  // marker or a record, published with release after its payload.
  const void* peekMarked(std::uint64_t& len, Violation& bad) {
    std::uint64_t off = tail & r.mask();
    std::uint64_t word = r.headerAt(off, std::memory_order_acquire);
    if (static_cast<std::uint32_t>(word) == kEmptyMark) return nullptr;
    if (static_cast<std::uint32_t>(word) == kWrapMark) {
      if (off == 0) return bad = "a wrap marker is at the start of the ring", nullptr;
      tail += r.capacity - off;
      at(r.h->tail).store(tail, std::memory_order_release);
      off = 0;
      word = r.headerAt(0, std::memory_order_acquire);
      if (static_cast<std::uint32_t>(word) == kEmptyMark) return nullptr;
      if (static_cast<std::uint32_t>(word) == kWrapMark) return bad = "a wrap marker is at the start of the ring", nullptr;
    }
    return record(off, word, r.capacity - off, len, bad);
  }

  const void* peekHead(std::uint64_t& len, Violation& bad) {
    std::uint64_t off = tail & r.mask();
    std::uint64_t word;
    // The producer's position is read only when the last one seen says the ring is empty. The
    // record header is loaded right after it, before the branch, so that both lines travel from
    // the producer's CPU together instead of one after the other (the load is ordered after the
    // acquire; its value is used only when the position says a record is there).
    if (tail == head) {
      const std::uint64_t h = at(r.h->head).load(std::memory_order_acquire);
      word = r.headerAt(off);
      // The producer's position only moves forward, by whole records, at most a ring ahead of ours.
      if ((h & 7) != 0 || h - tail > r.capacity) return bad = "its write position is outside the ring", nullptr;
      head = h;
      if (tail == head) {
        // Same cache line as head: a producer that marks says so before its first record.
        marks = (at(r.h->producer_flags).load(std::memory_order_acquire) & COLO_RING_MARKS) != 0;
        return nullptr;
      }
    } else {
      word = r.headerAt(off);
    }
    if (static_cast<std::uint32_t>(word) == kWrapMark) {
      const std::uint64_t skip = r.capacity - off;
      if (off == 0 || skip > head - tail) return bad = "a wrap marker points past what was written", nullptr;
      tail += skip;
      at(r.h->tail).store(tail, std::memory_order_release);
      if (tail == head) return bad = "a wrap marker is not followed by a record", nullptr;
      off = 0;
      word = r.headerAt(0);
    }
    return record(off, word, std::min(head - tail, r.capacity - off), len, bad);
  }

  // Checks the record at `off` whose header is `word`, with at most `room` bytes it may span.
  const void* record(std::uint64_t off, std::uint64_t word, std::uint64_t room, std::uint64_t& len, Violation& bad) {
    const std::uint64_t length = static_cast<std::uint32_t>(word);
    const auto sequence = static_cast<std::uint32_t>(word >> 32);
    if (length > r.maxMessage()) return bad = "a record is longer than the ring allows", nullptr;
    const std::uint64_t n = align8(kRecordHeader + length);
    if (n > room) return bad = "a record runs past what was written", nullptr;
    if (sequence != static_cast<std::uint32_t>(consumed + 1)) return bad = "a record is out of sequence", nullptr;
    need = n;
    len = length;
    return r.data + off + kRecordHeader;
  }
};

}  // namespace colo::ring
