/* The byte layout of a colo channel segment, shared by the agent (which lays it out) and
 * libcolo (which maps it). docs/protocol.md describes it for other languages. Little-endian. */
#ifndef COLO_CHANNEL_LAYOUT_H
#define COLO_CHANNEL_LAYOUT_H

#include <stdint.h>

#define COLO_CHANNEL_MAGIC 0x314e4843304c4f43ULL /* "COLOCHN1" read as little-endian u64 */
#define COLO_CHANNEL_VERSION 1
#define COLO_CACHE_LINE 64
#define COLO_RECORD_ALIGN 8
#define COLO_RECORD_WRAP 0xffffffffu  /* record length meaning "skip to the start of the ring" */
#define COLO_RECORD_EMPTY 0xfffffffeu /* record length meaning "nothing here yet" (marks, below) */
#define COLO_RING_MARKS 1u            /* producer_flags: every record is followed by an empty mark */

/* Segment: [segment header: 64 B][ring 0][ring 1]. Ring 0 carries side 0 -> side 1 (side 0 is
 * the one that asked for the channel), ring 1 the other way. */
struct colo_segment_header {
  uint64_t magic;
  uint32_t version;
  uint32_t ring_count;      /* 2 */
  uint64_t ring_offset[2];  /* from the segment start */
  uint64_t ring_capacity;   /* data bytes per ring, a power of two */
  uint8_t pad[24];
};

/* Ring: three cache lines of control, then `ring_capacity` data bytes. Positions only grow
 * (mod 2^64); the data offset is position & (capacity - 1). */
struct colo_ring_header {
  /* written by the producer */
  uint64_t head;            /* bytes committed */
  uint64_t produced;        /* messages committed (sequence numbers start at 1) */
  uint32_t producer_flags;  /* COLO_RING_MARKS, set before the first record */
  uint8_t pad0[44];
  /* written by the consumer */
  uint64_t tail;            /* bytes released */
  uint64_t consumed;        /* messages released */
  uint8_t pad1[48];
  /* sleep flags: set by a side before it blocks on its doorbell, cleared when it wakes */
  uint32_t consumer_sleeping;
  uint32_t producer_sleeping;
  uint8_t pad2[56];
};

/* Record in the data area, 8-byte aligned, never split across the end of the ring:
 *   u32 length (payload bytes; COLO_RECORD_WRAP = skip to position 0), u32 sequence (low 32
 *   bits of the message number), payload, padding to 8. */
struct colo_record_header {
  uint32_t length;
  uint32_t sequence;
};


#ifdef __cplusplus
extern "C" {
#endif
/* Lays out a zeroed segment of `total` bytes; returns the ring capacity (0: too small). */
static inline uint64_t colo_channel_layout_init(void* base, uint64_t total) {
  const uint64_t ring_hdr = sizeof(struct colo_ring_header);
  const uint64_t seg_hdr = sizeof(struct colo_segment_header);
  if (total < seg_hdr + 2 * (ring_hdr + 4096)) return 0;
  uint64_t cap = 1;
  while (cap * 2 <= (total - seg_hdr - 2 * ring_hdr) / 2) cap *= 2;
  struct colo_segment_header* h = (struct colo_segment_header*)base;
  h->magic = COLO_CHANNEL_MAGIC;
  h->version = COLO_CHANNEL_VERSION;
  h->ring_count = 2;
  h->ring_offset[0] = seg_hdr;
  h->ring_offset[1] = seg_hdr + ring_hdr + cap;
  h->ring_capacity = cap;
  return cap;
}
#ifdef __cplusplus
}
#endif
#endif
