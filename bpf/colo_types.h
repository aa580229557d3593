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
  __u32 flags; /* COLO_POD_* */
  __u32 pad;
};

/* colo_pod_info.flags. sock_ops splices a connection only when both ends have SPLICE and neither
 * has UNSAFE. colo-node sets SPLICE (every pod when the kernel passed the self-test; only pods
 * that declared colo.dev/splice in per-pod mode) and GUARDED (per-pod mode); the guard sets UNSAFE
 * on a GUARDED pod's first blocking read, so its new connections stop being spliced at once. */
#define COLO_POD_SPLICE (1u << 0)
#define COLO_POD_GUARDED (1u << 1)
#define COLO_POD_UNSAFE (1u << 2)
/* Set by the guard once it has told colo-node about the pod (one event per kind and pod). */
#define COLO_POD_SEEN_BLOCKING (1u << 3)
#define COLO_POD_SEEN_EAGAIN (1u << 4)
#define COLO_POD_SEEN_SPLICE (1u << 5)

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
  COLO_STAT_SKIPPED_NOT_SPLICE, /* both ends pods, but one may not be spliced (not declared, or unsafe) */
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

/* The guard (colo_guard.bpf.c): what it saw on spliced sockets of one pod address (splice(2)
 * reads are counted in a map of their own, colo_guard_splices). */
struct colo_guard_count {
  __u64 blocking_reads;  /* receive calls without MSG_DONTWAIT on a blocking file */
  __u64 spurious_eagain; /* EAGAIN returned to such a caller before its timeout */
};

#define COLO_GUARD_BLOCKING_READ 1
#define COLO_GUARD_SPURIOUS_EAGAIN 2
#define COLO_GUARD_SPLICE_READ 3 /* splice(2) from a spliced socket: the reader cannot get its data */

/* Sent to colo-node (ring buffer) the first time a pod address does each kind. */
struct colo_guard_event {
  __u32 kind; /* COLO_GUARD_* */
  __u32 pid;  /* the process (tgid) */
  __u32 tid;
  __u32 flags;           /* the pod's flags after the guard acted (COLO_POD_UNSAFE set: withdrawn) */
  struct colo_addr addr; /* the socket's local address: the pod */
  char comm[16];
};

#endif
