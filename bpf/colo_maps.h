/* Every map colo's datapath uses, pinned by name under /sys/fs/bpf/colo so that an agent restart
 * or upgrade reuses them and established spliced connections keep working. */
#ifndef COLO_MAPS_H
#define COLO_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "colo_types.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, COLO_MAX_PODS);
  __type(key, struct colo_addr);
  __type(value, struct colo_pod_info);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} colo_pods SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, COLO_MAX_SOCKS);
  __type(key, struct colo_sock_key);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} colo_socks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, COLO_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} colo_stats SEC(".maps");

static __always_inline void colo_count(__u32 stat, __u64 n) {
  __u64 *v = bpf_map_lookup_elem(&colo_stats, &stat);
  if (v) *v += n;
}

#endif
