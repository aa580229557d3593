/* Every map colo's datapath uses, pinned by name under /sys/fs/bpf/colo so that an agent restart
 * or upgrade reuses them and established spliced connections keep working. */
#ifndef COLO_MAPS_H
#define COLO_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
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

/* An IPv4 peer of a dual-stack IPv6 socket (a server listening on "::", the default of Go, Java and
 * Python) is seen as ::ffff:a.b.c.d. The pod map and the IPv4 end's socket key hold a.b.c.d, so
 * such addresses are looked up, and keyed, as the IPv4 addresses they are. */
static __always_inline int colo_v4_mapped(const __u32 *ip) {
  return ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void colo_key_unmap(struct colo_sock_key *k) {
  if (k->family != 10 /* AF_INET6 */ || !colo_v4_mapped(k->local_ip) || !colo_v4_mapped(k->remote_ip)) return;
  k->family = 2; /* AF_INET */
  k->local_ip[0] = k->local_ip[3];
  k->remote_ip[0] = k->remote_ip[3];
  k->local_ip[1] = k->local_ip[2] = k->local_ip[3] = 0;
  k->remote_ip[1] = k->remote_ip[2] = k->remote_ip[3] = 0;
}

static __always_inline void colo_addr_unmap(struct colo_addr *a) {
  if (a->family != 10 /* AF_INET6 */ || !colo_v4_mapped(a->addr)) return;
  a->family = 2; /* AF_INET */
  a->addr[0] = a->addr[3];
  a->addr[1] = a->addr[2] = a->addr[3] = 0;
}

#endif
