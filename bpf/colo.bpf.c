/* colo's transparent splice: TCP between two opted-in pods on this node moves, once established,
 * from the TCP/IP stack onto a socket-to-socket path. The handshake still crosses netfilter, so
 * NetworkPolicy still decides who may connect. */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "colo_maps.h"

#define AF_INET 2
#define AF_INET6 10

/* Load-time settings (rodata), set by colo-node before load. */
const volatile __u8 colo_ipv6 = 1;

/* The pod's flags, or -1 when the address is not an opted-in pod of this node. */
static __always_inline long colo_pod_flags(__u32 family, const __u32 *ip) {
  struct colo_addr a = {.family = family};
  if (family == AF_INET) {
    a.addr[0] = ip[0];
  } else {
    a.addr[0] = ip[0];
    a.addr[1] = ip[1];
    a.addr[2] = ip[2];
    a.addr[3] = ip[3];
  }
  struct colo_pod_info *info = bpf_map_lookup_elem(&colo_pods, &a);
  return info ? (long)info->flags : -1;
}

static __always_inline int colo_may_splice(long flags) {
  return flags >= 0 && (flags & COLO_POD_SPLICE) && !(flags & COLO_POD_UNSAFE);
}

SEC("sockops")
int colo_sockops(struct bpf_sock_ops *skops) {
  if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) return 1;
  struct colo_sock_key key = {};
  key.family = skops->family;
  if (key.family == AF_INET) {
    key.local_ip[0] = skops->local_ip4;
    key.remote_ip[0] = skops->remote_ip4;
  } else if (key.family == AF_INET6) {
    key.local_ip[0] = skops->local_ip6[0];
    key.local_ip[1] = skops->local_ip6[1];
    key.local_ip[2] = skops->local_ip6[2];
    key.local_ip[3] = skops->local_ip6[3];
    key.remote_ip[0] = skops->remote_ip6[0];
    key.remote_ip[1] = skops->remote_ip6[1];
    key.remote_ip[2] = skops->remote_ip6[2];
    key.remote_ip[3] = skops->remote_ip6[3];
    colo_key_unmap(&key); /* IPv4 on a dual-stack socket */
    if (key.family == AF_INET6 && !colo_ipv6) return 1;
  } else {
    return 1;
  }
  /* Both ends must be opted-in pods of this node that may be spliced; anything else keeps its
   * normal path. */
  const long local = colo_pod_flags(key.family, key.local_ip), remote = colo_pod_flags(key.family, key.remote_ip);
  if (local < 0 || remote < 0) {
    colo_count(COLO_STAT_SKIPPED_NOT_POD, 1);
    return 1;
  }
  if (!colo_may_splice(local) || !colo_may_splice(remote)) {
    colo_count(COLO_STAT_SKIPPED_NOT_SPLICE, 1);
    return 1;
  }
  key.local_port = skops->local_port;
  key.remote_port = bpf_ntohl(skops->remote_port);
  if (bpf_sock_hash_update(skops, &colo_socks, &key, BPF_ANY) == 0) colo_count(COLO_STAT_SOCKETS_INSERTED, 1);
  else colo_count(COLO_STAT_INSERT_FAILED, 1);
  return 1;
}

SEC("sk_msg")
int colo_sk_msg(struct sk_msg_md *msg) {
  struct colo_sock_key peer = {};
  peer.family = msg->family;
  if (peer.family == AF_INET) {
    peer.local_ip[0] = msg->remote_ip4;
    peer.remote_ip[0] = msg->local_ip4;
  } else {
    peer.local_ip[0] = msg->remote_ip6[0];
    peer.local_ip[1] = msg->remote_ip6[1];
    peer.local_ip[2] = msg->remote_ip6[2];
    peer.local_ip[3] = msg->remote_ip6[3];
    peer.remote_ip[0] = msg->local_ip6[0];
    peer.remote_ip[1] = msg->local_ip6[1];
    peer.remote_ip[2] = msg->local_ip6[2];
    peer.remote_ip[3] = msg->local_ip6[3];
    colo_key_unmap(&peer); /* IPv4 on a dual-stack socket: the peer's key is IPv4 */
  }
  peer.local_port = bpf_ntohl(msg->remote_port);
  peer.remote_port = msg->local_port;
  __u32 size = msg->size;
  if (bpf_msg_redirect_hash(msg, &colo_socks, &peer, BPF_F_INGRESS) == SK_PASS) {
    colo_count(COLO_STAT_MSGS_REDIRECTED, 1);
    colo_count(COLO_STAT_BYTES_REDIRECTED, size);
  } else {
    colo_count(COLO_STAT_FALLBACKS, 1);
  }
  /* Always SK_PASS: returning the helper's SK_DROP would fail the write with EACCES when the
   * peer is not (yet) in the map; SK_PASS lets such data take the normal path. */
  return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
