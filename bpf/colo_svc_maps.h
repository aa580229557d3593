/* The maps of colo's Service translation (colo_svc.bpf.c), apart from the splice's (colo_maps.h) so
 * that neither object creates the other's maps. Pinned by name beside them. */
#ifndef COLO_SVC_MAPS_H
#define COLO_SVC_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "colo_types.h"

/* Service translation (colo_svc.bpf.c): frontends with their local backends, the caller pods, the
 * address each translated socket dialled, and counters. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, COLO_SVC_MAX_FRONTENDS);
  __uint(map_flags, BPF_F_NO_PREALLOC); /* memory follows the Services that ask, not the cap */
  __type(key, struct colo_svc_key);
  __type(value, struct colo_svc_value);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} colo_svc_frontends SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, COLO_SVC_MAX_CALLERS);
  __type(key, __u64);
  __type(value, struct colo_svc_caller);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} colo_svc_callers SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct colo_svc_orig);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} colo_svc_orig_dst SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, COLO_SVC_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} colo_svc_stats SEC(".maps");

static __always_inline void colo_svc_count(__u32 stat) {
  __u64 *v = bpf_map_lookup_elem(&colo_svc_stats, &stat);
  if (v) *v += 1;
}

#endif
