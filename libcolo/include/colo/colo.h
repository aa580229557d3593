/* libcolo: talk to colo-node from inside a pod. Stable C ABI; nothing is thrown across it.
 *
 * The agent is found at the abstract socket @colo in the pod's network namespace, or at the path
 * in $COLO_SOCKET. Every call returns COLO_OK (0) or a negative colo_status; colo_last_error()
 * gives the agent's message for the calling thread's last failure.
 *
 *   colo_client* c;  colo_open(&c);
 *   colo_conn conn;  colo_dial(c, "shop/cart", 2000, &conn);   // conn.fd is a connected socket
 *   ...              close(conn.fd);  colo_close(c);
 */
#ifndef COLO_COLO_H
#define COLO_COLO_H

#ifdef __cplusplus
extern "C" {
#endif

#define COLO_API_VERSION 1

typedef enum colo_status {
  COLO_OK = 0,
  COLO_E_UNREACHABLE = -1, /* no agent at @colo / $COLO_SOCKET */
  COLO_E_PROTOCOL = -2,    /* the agent said something this library does not understand */
  COLO_E_NOT_FOUND = -3,   /* nothing listens on that name on this node */
  COLO_E_DENIED = -4,      /* policy refused the dial, or this process is not the pod */
  COLO_E_REFUSED = -5,     /* TCP connection refused */
  COLO_E_TIMEOUT = -6,
  COLO_E_INVALID = -7,     /* bad argument */
  COLO_E_EXISTS = -8,      /* the name is already registered */
  COLO_E_UNAVAILABLE = -9, /* the listener went away or is not accepting */
  COLO_E_INTERNAL = -10
} colo_status;

typedef enum colo_transport { COLO_TRANSPORT_UNIX = 1, COLO_TRANSPORT_TCP = 2 } colo_transport;

typedef struct colo_identity {
  char ns[64];    /* Kubernetes namespace */
  char name[254]; /* pod name */
  char uid[65];   /* pod UID (may be empty: podman) */
  char node[254]; /* whoami only */
} colo_identity;

typedef struct colo_conn {
  int fd;                  /* connected stream socket; the caller owns and closes it */
  colo_transport transport;
  colo_identity peer;      /* the other pod (unix); empty for tcp */
  char address[128];       /* host:port for tcp */
} colo_conn;

typedef struct colo_client colo_client;
typedef struct colo_listener colo_listener;

int colo_open(colo_client** out);
void colo_close(colo_client* c);
int colo_whoami(colo_client* c, colo_identity* out);

/* target: "namespace/name" or "name" (a name registered on this node; own namespace if not
 * qualified), or "ip:port" / "[ipv6]:port" (TCP, connected from this pod's network namespace), or,
 * in Kubernetes mode, "service/<ns>/<name>:<port or port name>" or "pod/<ns>/<name>:<port>": the
 * nearest way (a Unix pair to a backend on this node that listens on "port/<targetPort>", else TCP
 * to a backend's pod IP on this node, else TCP to the ClusterIP). */
int colo_dial(colo_client* c, const char* target, int timeout_ms, colo_conn* out);
/* The calling thread's last successful dial by Kubernetes name: "<via>: <why>" with via "unix",
 * "pod-ip" or "cluster-ip"; "" after any other dial. */
const char* colo_last_route(void);

/* Registers `name` (in this pod's namespace) on its own connection to the agent; "port/<n>" says
 * this pod serves its TCP port n over colo too (dial by Kubernetes name finds it). */
int colo_listen(const char* name, colo_listener** out);
/* Waits up to timeout_ms (-1: forever) for the next incoming connection. A listener outlives
 * colo-node: when the agent restarts (an upgrade) colo_accept reconnects (back-off 50 ms to 2 s,
 * at least one attempt per call) and registers the name again, reporting both through the log
 * function; the listener's fd keeps its number (poll/select go on working; epoll users register
 * it again). Only colo_listener_close ends it. */
int colo_accept(colo_listener* l, int timeout_ms, colo_conn* out);
int colo_listener_fd(const colo_listener* l); /* readable when a connection is waiting */
void colo_listener_close(colo_listener* l);   /* releases the name */

/* Where libcolo reports what it does on its own (a listener listening again after colo-node
 * restarted): one line per call, without a newline. NULL (the default) writes to stderr. */
typedef void (*colo_log_fn)(const char* message);
void colo_set_log(colo_log_fn fn);

/* Shared-memory channels on a dialed pair (tier 3). Two single-producer single-consumer rings,
 * one each way, in memory both sides map: messages are written in place, nothing is copied by
 * the kernel. Side 0 asks colo-node for the memory (from its pod's hugepages when it has them,
 * else ordinary memory through memfd) and passes it to side 1 over the pair, so set a channel up
 * right after dial/accept, before other bytes flow on the pair. The pair stays open: when it
 * closes the peer is gone, and calls fail with COLO_E_UNAVAILABLE instead of hanging. A peer that
 * writes into the shared memory what the protocol forbids (docs/protocol.md) counts as gone too:
 * COLO_E_UNAVAILABLE from then on, "it broke the channel protocol" in colo_last_error(). */
typedef struct colo_channel colo_channel;
int colo_channel_open(colo_client* c, int pair_fd, unsigned long long bytes, colo_channel** out);
int colo_channel_accept(int pair_fd, int timeout_ms, colo_channel** out);
/* The same rings between two threads of one process (the monolith reference, and tests). */
int colo_channel_local_pair(unsigned long long bytes, colo_channel** side0, colo_channel** side1);
/* Producer: space for `len` bytes, written in place, then committed. */
int colo_channel_reserve(colo_channel* ch, unsigned long len, int timeout_ms, void** buf);
int colo_channel_commit(colo_channel* ch, unsigned long len);
/* Consumer: the next message, read in place, then released. */
int colo_channel_read(colo_channel* ch, int timeout_ms, const void** buf, unsigned long* len);
int colo_channel_release(colo_channel* ch);
unsigned long colo_channel_max_message(const colo_channel* ch);
const char* colo_channel_memory(const colo_channel* ch); /* "hugepages" or "memfd" */
void colo_channel_close(colo_channel* ch);

const char* colo_strerror(int status);
const char* colo_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
