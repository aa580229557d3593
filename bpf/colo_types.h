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

/* Service translation (colo_svc.bpf.c). */
#define COLO_SVC_MAX_FRONTENDS 16384
#define COLO_SVC_MAX_BACKENDS 16 /* local ready backends per Service port; more are not used */
#define COLO_SVC_MAX_CALLERS 16384

/* A Service frontend: ClusterIP, port (host order), protocol (IPPROTO_TCP). */
struct colo_svc_key {
  __u32 family; /* AF_INET or AF_INET6; IPv4 in addr[0] (network order), the rest zero */
  __u32 addr[4];
  __u16 port;
  __u16 proto;
};

struct colo_svc_backend {
  __u32 addr[4];
  __u16 port; /* host order */
  __u16 pad;
};

/* The local ready backends of one frontend, replaced whole by colo-node (one map update). */
struct colo_svc_value {
  __u32 count;
  __u32 svc_id; /* colo-node's number for the Service (for logs), 0 unknown */
  struct colo_svc_backend backends[COLO_SVC_MAX_BACKENDS];
};

/* A pod that may be translated for, keyed by its netns cookie. */
struct colo_svc_caller {
  __u32 flags; /* reserved */
  __u32 pad;
};

/* What the application dialled, and the backend it was given instead, kept per socket for
 * getpeername (which answers the dialled address only while the peer is that backend). */
struct colo_svc_orig {
  __u32 family;
  __u32 addr[4];
  __u32 backend[4];
  __u16 port;         /* host order */
  __u16 backend_port; /* host order */
};

enum colo_svc_stat {
  COLO_SVC_STAT_TRANSLATED = 0,
  COLO_SVC_STAT_NOT_CALLER,  /* a TCP connect to a translated frontend from a socket of no caller pod */
  COLO_SVC_STAT_PEERNAME_RESTORED,
  COLO_SVC_STAT_MAX,
};

#endif
