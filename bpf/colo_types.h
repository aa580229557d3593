/* Types shared by the BPF programs and colo-node (C++). Layouts are checked on the C++ side. */
#ifndef COLO_TYPES_H
#define COLO_TYPES_H

#include <linux/types.h>

#define COLO_MAX_PODS 65536
#define COLO_MAX_SOCKS 262144

/* An opted-in pod address on this node. IPv4 uses addr[0] (network order), the rest zero. */
struct colo_addr {
  __u32 family; /* AF_INET or AF_INET6 */
  __u32 addr[4];
};

struct colo_pod_info {
  __u32 flags; /* reserved */
  __u32 pad;
};

/* A socket in the sockhash, seen from its own side. Ports in host order. */
struct colo_sock_key {
  __u32 family;
  __u32 local_ip[4];
  __u32 remote_ip[4];
  __u32 local_port;
  __u32 remote_port;
};

enum colo_stat {
  COLO_STAT_SOCKETS_INSERTED = 0,
  COLO_STAT_INSERT_FAILED,
  COLO_STAT_SKIPPED_NOT_POD,
  COLO_STAT_MSGS_REDIRECTED,
  COLO_STAT_BYTES_REDIRECTED,
  COLO_STAT_FALLBACKS, /* no peer in the sockhash: the message took the normal path */
  COLO_STAT_MAX,
};

#endif
