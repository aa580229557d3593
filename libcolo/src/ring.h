// Single-producer single-consumer ring over a colo_ring_header (channel_layout.h). Lock-free;
// the producer writes head/produced, the consumer tail/consumed, with acquire/release ordering.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "colo/channel_layout.h"

namespace colo::ring {

inline std::uint64_t align8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }

template <class T>
std::atomic_ref<T> at(T& v) { return std::atomic_ref<T>(v); }

struct View {
  colo_ring_header* h = nullptr;
  unsigned char* data = nullptr;
  std::uint64_t capacity = 0;  // power of two
  std::uint64_t mask() const { return capacity - 1; }
  std::uint64_t maxMessage() const { return capacity / 2 - sizeof(colo_record_header); }
};

// Producer. Returns a pointer to `len` writable bytes, or nullptr when the ring is full for now.
inline void* reserve(View& r, std::uint64_t len, std::uint64_t& pendingHead) {
  const std::uint64_t need = align8(sizeof(colo_record_header) + len);
  std::uint64_t head = at(r.h->head).load(std::memory_order_relaxed);
  const std::uint64_t tail = at(r.h->tail).load(std::memory_order_acquire);
  std::uint64_t off = head & r.mask();
  std::uint64_t extra = 0;
  if (off + need > r.capacity) extra = r.capacity - off;  // skip the tail end of the ring
  if (head + extra + need - tail > r.capacity) return nullptr;
  if (extra) {
    auto* wrap = reinterpret_cast<colo_record_header*>(r.data + off);
    wrap->length = COLO_RECORD_WRAP;
    head += extra;
    off = 0;
  }
  auto* rec = reinterpret_cast<colo_record_header*>(r.data + off);
  rec->length = static_cast<std::uint32_t>(len);
  pendingHead = head;  // where this record starts
  return rec + 1;
}

inline void commit(View& r, std::uint64_t pendingHead, std::uint64_t len) {
  auto* rec = reinterpret_cast<colo_record_header*>(r.data + (pendingHead & r.mask()));
  const std::uint64_t seq = at(r.h->produced).load(std::memory_order_relaxed) + 1;
  rec->length = static_cast<std::uint32_t>(len);
  rec->sequence = static_cast<std::uint32_t>(seq);
  at(r.h->produced).store(seq, std::memory_order_relaxed);
  at(r.h->head).store(pendingHead + align8(sizeof(colo_record_header) + len), std::memory_order_release);
}

// Consumer. Returns the next record's payload, or nullptr when the ring is empty for now.
inline const void* peek(View& r, std::uint64_t& len, std::uint32_t& seq) {
  std::uint64_t tail = at(r.h->tail).load(std::memory_order_relaxed);
  const std::uint64_t head = at(r.h->head).load(std::memory_order_acquire);
  if (tail == head) return nullptr;
  auto* rec = reinterpret_cast<const colo_record_header*>(r.data + (tail & r.mask()));
  if (rec->length == COLO_RECORD_WRAP) {
    tail += r.capacity - (tail & r.mask());
    at(r.h->tail).store(tail, std::memory_order_release);
    if (tail == head) return nullptr;
    rec = reinterpret_cast<const colo_record_header*>(r.data);
  }
  len = rec->length;
  seq = rec->sequence;
  return rec + 1;
}

inline void release(View& r, std::uint64_t len) {
  const std::uint64_t tail = at(r.h->tail).load(std::memory_order_relaxed);
  at(r.h->consumed).store(at(r.h->consumed).load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  at(r.h->tail).store(tail + align8(sizeof(colo_record_header) + len), std::memory_order_release);
}

}  // namespace colo::ring
