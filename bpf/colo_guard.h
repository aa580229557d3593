/* The guard's logic, in one place; bpf/colo_guard.bpf.c holds only the entry points (one per way
 * in). What the guard looks for on a spliced socket of a pod (one in a sockmap, COLO_POD_SPLICE):
 * - a blocking read: tcp_bpf_recvmsg waits once and returns EAGAIN when the wait ends with nothing
 *   queued, even to a blocking caller (a signal, an RST, the ACK of the reader's FIN end the wait);
 * - EAGAIN returned to such a caller before its timeout;
 * - a splice(2) from the socket: tcp_splice_read reads only the socket's own receive queue, never
 *   the psock queue the spliced data sits in, so that reader gets nothing, then EOF.
 * Each means the pod is not safe to splice: in per-pod mode (COLO_POD_GUARDED) the first blocking
 * read or splice(2) marks it COLO_POD_UNSAFE, so sock_ops splices none of its new connections, and
 * colo-node is told once per pod and kind which process did it. Kernel fields are read through
 * CO-RE (kernel BTF). */
#ifndef COLO_GUARD_H
#define COLO_GUARD_H

#include <linux/bpf.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "colo_maps.h"

#define AF_INET 2
#define AF_INET6 10
#define MSG_DONTWAIT 0x40
#define O_NONBLOCK 04000
#define EAGAIN 11
#define MAX_SCHEDULE_TIMEOUT 0x7fffffffffffffffL
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* The kernel's types, only the fields read here; offsets come from the kernel's BTF at load. */
struct inode {
  unsigned short i_mode;
} __attribute__((preserve_access_index));
struct file {
  unsigned int f_flags;
  struct inode *f_inode;
  void *private_data;
} __attribute__((preserve_access_index));
struct fdtable {
  unsigned int max_fds;
  struct file **fd;
} __attribute__((preserve_access_index));
struct files_struct {
  struct fdtable *fdt;
} __attribute__((preserve_access_index));
struct task_struct {
  struct files_struct *files;
} __attribute__((preserve_access_index));
struct sock;
struct socket {
  struct file *file;
  struct sock *sk;
} __attribute__((preserve_access_index));
struct in6_addr {
  union {
    __u32 u6_addr32[4];
  } in6_u;
} __attribute__((preserve_access_index));
struct sock_common {
  unsigned short skc_family;
  __u32 skc_rcv_saddr;
  struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));
struct sock {
  struct sock_common __sk_common;
  struct socket *sk_socket;
  long sk_rcvtimeo;
  void *sk_user_data;
} __attribute__((preserve_access_index));
#define SK_USER_DATA_PSOCK 4UL /* sk_user_data holds a psock: the socket is in a sockmap */
struct msghdr;

extern int CONFIG_HZ __kconfig __weak;

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, COLO_MAX_PODS);
  __type(key, struct colo_addr);
  __type(value, struct colo_guard_count);
  __uint(pinning, LIBBPF_PIN_BY_NAME); /* kept across a restart, like the guard's pinned links */
} colo_guard_counts SEC(".maps");

/* splice(2) reads, per pod address: a map of its own so that colo_guard_counts pinned by an
 * earlier colo-node keeps its layout. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, COLO_MAX_PODS);
  __type(key, struct colo_addr);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} colo_guard_splices SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 64 * 1024);
  __uint(pinning, LIBBPF_PIN_BY_NAME); /* what the pinned guard saw while colo-node was down is read at its restart */
} colo_guard_events SEC(".maps");

/* A blocking call in progress, by thread: when it began (to tell a timeout from a spurious
 * EAGAIN) and, for the kretprobe, its socket. */
struct colo_guard_call {
  struct sock *sk;
  __u64 start_ns;
  int flags;
  int pad;
};
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, __u64);
  __type(value, struct colo_guard_call);
} colo_guard_calls SEC(".maps");

/* The pod address a socket belongs to (its local address); 0 when not IPv4/IPv6. */
static __always_inline int guard_pod(struct sock *sk, struct colo_addr *a) {
  __builtin_memset(a, 0, sizeof(*a));
  a->family = BPF_CORE_READ(sk, __sk_common.skc_family);
  if (a->family == AF_INET) {
    a->addr[0] = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
  } else if (a->family == AF_INET6) {
    BPF_CORE_READ_INTO(&a->addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
    colo_addr_unmap(a); /* an IPv4 connection on a dual-stack socket */
  } else {
    return 0;
  }
  return 1;
}

static __always_inline int guard_spliced(struct sock *sk) {
  return ((unsigned long)BPF_CORE_READ(sk, sk_user_data) & SK_USER_DATA_PSOCK) != 0;
}

static __always_inline int guard_blocking(struct sock *sk, int flags) {
  if (flags & MSG_DONTWAIT) return 0;
  struct file *file = BPF_CORE_READ(sk, sk_socket, file);
  if (file && (BPF_CORE_READ(file, f_flags) & O_NONBLOCK)) return 0;
  return 1;
}

static __always_inline void guard_tell(__u32 kind, const struct colo_addr *a, __u32 flags) {
  struct colo_guard_event *e = bpf_ringbuf_reserve(&colo_guard_events, sizeof(*e), 0);
  if (!e) return;
  const __u64 id = bpf_get_current_pid_tgid();
  e->kind = kind;
  e->pid = id >> 32;
  e->tid = (__u32)id;
  e->flags = flags;
  e->addr = *a;
  bpf_get_current_comm(e->comm, sizeof(e->comm));
  bpf_ringbuf_submit(e, 0);
}

static __always_inline void guard_count(const struct colo_addr *a, __u32 kind) {
  if (kind == COLO_GUARD_SPLICE_READ) {
    __u64 *n = bpf_map_lookup_elem(&colo_guard_splices, a);
    if (!n) {
      __u64 zero = 0;
      bpf_map_update_elem(&colo_guard_splices, a, &zero, BPF_NOEXIST);
      n = bpf_map_lookup_elem(&colo_guard_splices, a);
      if (!n) return;
    }
    __sync_fetch_and_add(n, 1);
    return;
  }
  struct colo_guard_count *c = bpf_map_lookup_elem(&colo_guard_counts, a);
  if (!c) {
    struct colo_guard_count zero = {};
    bpf_map_update_elem(&colo_guard_counts, a, &zero, BPF_NOEXIST);
    c = bpf_map_lookup_elem(&colo_guard_counts, a);
    if (!c) return;
  }
  if (kind == COLO_GUARD_SPURIOUS_EAGAIN) __sync_fetch_and_add(&c->spurious_eagain, 1);
  else __sync_fetch_and_add(&c->blocking_reads, 1);
}

/* One thing the declaration rules out, on a socket of the pod at `a`: counted; the pod marked
 * `seen` (and UNSAFE too when `withdraw` and it is guarded: its very next connection is not
 * spliced, no round trip to colo-node); colo-node told the first time, with the process.
 * 0 when `a` is not a pod of colo's. */
static __always_inline int guard_saw(const struct colo_addr *a, __u32 kind, __u32 seen, int withdraw) {
  struct colo_pod_info *pod = bpf_map_lookup_elem(&colo_pods, a);
  if (!pod) return 0;
  guard_count(a, kind);
  const __u32 set = seen | ((withdraw && (pod->flags & COLO_POD_GUARDED)) ? COLO_POD_UNSAFE : 0);
  const __u32 before = __sync_fetch_and_or(&pod->flags, set);
  /* Told the first time it is seen, and again when it withdraws the pod: a pod seen under
   * `datapath: on` (not withdrawn) and withdrawn later under `auto` gets its log line and Event. */
  if (!(before & seen) || ((set & ~before) & COLO_POD_UNSAFE)) guard_tell(kind, a, before | set);
  return 1;
}

/* A receive call on a socket in a sockmap (`flags`: the recvmsg flags). Returns 1 when it was a
 * blocking read of a pod's socket (counted, and the pod withdrawn when guarded). */
static __always_inline int guard_blocking_read(struct sock *sk, int flags, struct colo_addr *a) {
  if (!guard_blocking(sk, flags)) return 0;
  if (!guard_pod(sk, a)) return 0;
  return guard_saw(a, COLO_GUARD_BLOCKING_READ, COLO_POD_SEEN_BLOCKING, 1);
}

static __always_inline void guard_spurious_eagain(const struct colo_addr *a) {
  guard_saw(a, COLO_GUARD_SPURIOUS_EAGAIN, COLO_POD_SEEN_EAGAIN, 0);
}

/* Entry of tcp_bpf_recvmsg(_parser) (fentry, kprobe): remembers a blocking call, by thread. */
static __always_inline void guard_enter(struct sock *sk, int flags) {
  struct colo_addr a;
  if (!guard_blocking_read(sk, flags, &a)) return;
  const __u64 id = bpf_get_current_pid_tgid();
  struct colo_guard_call call = {.sk = sk, .start_ns = bpf_ktime_get_ns(), .flags = flags};
  bpf_map_update_elem(&colo_guard_calls, &id, &call, BPF_ANY);
}

/* Return of tcp_bpf_recvmsg(_parser) (fexit, kretprobe): an EAGAIN to the blocking call that
 * guard_enter remembered, before its SO_RCVTIMEO ran out, is spurious. The socket is the one
 * remembered (a kretprobe sees only the return value). */
static __always_inline void guard_return(long ret) {
  const __u64 id = bpf_get_current_pid_tgid();
  struct colo_guard_call *call = bpf_map_lookup_elem(&colo_guard_calls, &id);
  if (!call) return;
  struct sock *sk = call->sk;
  const __u64 start = call->start_ns;
  bpf_map_delete_elem(&colo_guard_calls, &id);
  if (ret != -EAGAIN) return;
  /* EAGAIN to a blocking caller is right only when its SO_RCVTIMEO ran out. */
  const long timeo = BPF_CORE_READ(sk, sk_rcvtimeo);
  if (timeo != MAX_SCHEDULE_TIMEOUT) {
    if (CONFIG_HZ <= 0) return; /* cannot tell: say nothing rather than something wrong */
    const __u64 limit = (__u64)timeo * (1000000000ULL / (__u64)CONFIG_HZ);
    if (bpf_ktime_get_ns() - start >= limit) return;
  }
  struct colo_addr a;
  if (!guard_pod(sk, &a)) return;
  guard_spurious_eagain(&a);
}

/* After a socket receive returned (sock_recv_length): only sockets with a psock are spliced. A
 * read is noticed as it returns; without the call's start, only a reader without SO_RCVTIMEO is
 * known to have been woken early. */
static __always_inline void guard_received(struct sock *sk, int ret, int flags) {
  if (!guard_spliced(sk)) return;
  struct colo_addr a;
  if (!guard_blocking_read(sk, flags, &a)) return;
  if (ret == -EAGAIN && BPF_CORE_READ(sk, sk_rcvtimeo) == MAX_SCHEDULE_TIMEOUT) guard_spurious_eagain(&a);
}

/* The socket behind file descriptor `fd` of the current process, or NULL when it is none. */
static __always_inline struct sock *guard_fd_sock(int fd) {
  if (fd < 0) return 0;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
  if (!fdt || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds)) return 0;
  struct file **fds = BPF_CORE_READ(fdt, fd);
  struct file *file = 0;
  if (!fds || bpf_probe_read_kernel(&file, sizeof(file), fds + fd) != 0 || !file) return 0;
  if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK) return 0;
  /* A socket's file points at its struct socket, which points back at the file. */
  struct socket *sock = (struct socket *)BPF_CORE_READ(file, private_data);
  if (!sock || BPF_CORE_READ(sock, file) != file) return 0;
  return BPF_CORE_READ(sock, sk);
}

/* splice(2) with `fd_in` as its source: when that is a pod's spliced socket, the reader cannot get
 * the spliced data (counted, the pod withdrawn when guarded). Blocking or not does not matter. */
static __always_inline void guard_splice_from(int fd_in) {
  struct sock *sk = guard_fd_sock(fd_in);
  if (!sk || !guard_spliced(sk)) return;
  struct colo_addr a;
  if (!guard_pod(sk, &a)) return;
  guard_saw(&a, COLO_GUARD_SPLICE_READ, COLO_POD_SEEN_SPLICE, 1);
}

#endif
