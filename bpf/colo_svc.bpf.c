/* colo's Service translation: a TCP connect from an opted-in pod to the ClusterIP:port of a Service
 * that asks for node-local traffic goes straight to a ready backend pod on this node (colo-node
 * fills colo_svc_frontends with only those), so the connection is pod to pod and the splice can
 * pair it. getpeername still answers the ClusterIP:port the application dialled. Everything else
 * (UDP, other addresses, sockets of processes that are no caller pod) is left as it was. */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "colo_svc_maps.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6

/* Whether the socket belongs to a caller pod: its network namespace is one colo-node put in
 * colo_svc_callers (a hostNetwork process has the host's, which is never there). */
static __always_inline int colo_svc_is_caller(struct bpf_sock_addr *ctx) {
  __u64 cookie = bpf_get_netns_cookie(ctx);
  return bpf_map_lookup_elem(&colo_svc_callers, &cookie) != 0;
}

/* One of the frontend's local backends, spread at random over connections. */
static __always_inline const struct colo_svc_backend *colo_svc_pick(const struct colo_svc_value *v) {
  __u32 n = v->count;
  if (n == 0) return 0;
  if (n > COLO_SVC_MAX_BACKENDS) n = COLO_SVC_MAX_BACKENDS;
  __u32 i = bpf_get_prandom_u32() % n;
  /* The compiler knows i < n <= MAX and would drop the check the verifier needs. */
  asm volatile("" : "+r"(i));
  if (i >= COLO_SVC_MAX_BACKENDS) return 0;
  return &v->backends[i];
}

/* Looks the frontend up and picks a backend; remembers the dialled address on the socket first,
 * so that a socket is only translated when getpeername can undo it. */
static __always_inline const struct colo_svc_backend *colo_svc_translate(struct bpf_sock_addr *ctx, struct colo_svc_key *key) {
  const struct colo_svc_value *v = bpf_map_lookup_elem(&colo_svc_frontends, key);
  if (!v) return 0;
  if (!colo_svc_is_caller(ctx)) {
    colo_svc_count(COLO_SVC_STAT_NOT_CALLER);
    return 0;
  }
  const struct colo_svc_backend *b = colo_svc_pick(v);
  if (!b) return 0;
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 0;
  struct colo_svc_orig *o = bpf_sk_storage_get(&colo_svc_orig_dst, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
  if (!o) return 0;
  o->family = key->family;
  o->addr[0] = key->addr[0];
  o->addr[1] = key->addr[1];
  o->addr[2] = key->addr[2];
  o->addr[3] = key->addr[3];
  o->port = key->port;
  o->backend[0] = b->addr[0];
  o->backend[1] = b->addr[1];
  o->backend[2] = b->addr[2];
  o->backend[3] = b->addr[3];
  o->backend_port = b->port;
  colo_svc_count(COLO_SVC_STAT_TRANSLATED);
  return b;
}

static __always_inline int colo_svc_tcp(struct bpf_sock_addr *ctx) {
  return ctx->type == SOCK_STREAM && ctx->protocol == IPPROTO_TCP;
}

SEC("cgroup/connect4")
int colo_svc_connect4(struct bpf_sock_addr *ctx) {
  if (!colo_svc_tcp(ctx)) return 1;
  struct colo_svc_key key = {.family = AF_INET, .proto = IPPROTO_TCP};
  key.addr[0] = ctx->user_ip4;
  key.port = bpf_ntohs((__u16)ctx->user_port);
  const struct colo_svc_backend *b = colo_svc_translate(ctx, &key);
  if (!b) return 1;
  ctx->user_ip4 = b->addr[0];
  ctx->user_port = bpf_htons(b->port);
  return 1;
}

/* IPv6 sockets, and IPv4 ClusterIPs dialled as v4-mapped addresses on them (::ffff:a.b.c.d goes
 * through this hook, not connect4). */
SEC("cgroup/connect6")
int colo_svc_connect6(struct bpf_sock_addr *ctx) {
  if (!colo_svc_tcp(ctx)) return 1;
  struct colo_svc_key key = {.proto = IPPROTO_TCP};
  __u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1], a2 = ctx->user_ip6[2], a3 = ctx->user_ip6[3];
  const int mapped = a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff);
  if (mapped) {
    key.family = AF_INET;
    key.addr[0] = a3;
  } else {
    key.family = AF_INET6;
    key.addr[0] = a0;
    key.addr[1] = a1;
    key.addr[2] = a2;
    key.addr[3] = a3;
  }
  key.port = bpf_ntohs((__u16)ctx->user_port);
  const struct colo_svc_backend *b = colo_svc_translate(ctx, &key);
  if (!b) return 1;
  if (mapped) {
    ctx->user_ip6[3] = b->addr[0];
  } else {
    ctx->user_ip6[0] = b->addr[0];
    ctx->user_ip6[1] = b->addr[1];
    ctx->user_ip6[2] = b->addr[2];
    ctx->user_ip6[3] = b->addr[3];
  }
  ctx->user_port = bpf_htons(b->port);
  return 1;
}

/* The dialled address, for a translated socket whose peer is still the backend it was given. */
static __always_inline struct colo_svc_orig *colo_svc_orig_of(struct bpf_sock_addr *ctx) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 0;
  return bpf_sk_storage_get(&colo_svc_orig_dst, sk, 0, 0);
}

SEC("cgroup/getpeername4")
int colo_svc_getpeername4(struct bpf_sock_addr *ctx) {
  struct colo_svc_orig *o = colo_svc_orig_of(ctx);
  if (!o || o->family != AF_INET) return 1;
  if (ctx->user_ip4 != o->backend[0] || bpf_ntohs((__u16)ctx->user_port) != o->backend_port) return 1;
  ctx->user_ip4 = o->addr[0];
  ctx->user_port = bpf_htons(o->port);
  colo_svc_count(COLO_SVC_STAT_PEERNAME_RESTORED);
  return 1;
}

SEC("cgroup/getpeername6")
int colo_svc_getpeername6(struct bpf_sock_addr *ctx) {
  struct colo_svc_orig *o = colo_svc_orig_of(ctx);
  if (!o) return 1;
  if (bpf_ntohs((__u16)ctx->user_port) != o->backend_port) return 1;
  __u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1], a2 = ctx->user_ip6[2], a3 = ctx->user_ip6[3];
  if (o->family == AF_INET) {
    if (a0 != 0 || a1 != 0 || a2 != bpf_htonl(0xffff) || a3 != o->backend[0]) return 1;
    ctx->user_ip6[3] = o->addr[0];
  } else {
    if (a0 != o->backend[0] || a1 != o->backend[1] || a2 != o->backend[2] || a3 != o->backend[3]) return 1;
    ctx->user_ip6[0] = o->addr[0];
    ctx->user_ip6[1] = o->addr[1];
    ctx->user_ip6[2] = o->addr[2];
    ctx->user_ip6[3] = o->addr[3];
  }
  ctx->user_port = bpf_htons(o->port);
  colo_svc_count(COLO_SVC_STAT_PEERNAME_RESTORED);
  return 1;
}

char LICENSE[] SEC("license") = "GPL";
