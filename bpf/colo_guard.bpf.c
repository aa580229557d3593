/* colo's guard: watches the kernel's sockmap receive path (tcp_bpf_recvmsg and
 * tcp_bpf_recvmsg_parser, used only for sockets in a sockmap) for readers that the splice breaks.
 * Those functions wait once and return EAGAIN when the wait ends with nothing queued, even to a
 * blocking caller (a signal, an RST, the ACK of the reader's FIN end the wait). A blocking read on
 * a spliced socket of a pod therefore means that pod is not safe to splice: in per-pod mode
 * (COLO_POD_GUARDED) the guard marks it COLO_POD_UNSAFE, so sock_ops splices none of its new
 * connections, and tells colo-node which process did it.
 * Three ways in, the first that loads wins: fentry/fexit on those functions (needs BPF
 * trampolines); the sock_recv_length tracepoint (Linux 6.3+: after every socket receive, with its
 * flags and result, so a read is noticed when it returns); kprobe/kretprobe. Socket fields are
 * read through CO-RE (kernel BTF). */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "colo_maps.h"

#define AF_INET 2
#define AF_INET6 10
#define MSG_DONTWAIT 0x40
#define O_NONBLOCK 04000
#define EAGAIN 11
#define MAX_SCHEDULE_TIMEOUT 0x7fffffffffffffffL

/* The kernel's types, only the fields read here; offsets come from the kernel's BTF at load. */
struct file {
  unsigned int f_flags;
} __attribute__((preserve_access_index));
struct socket {
  struct file *file;
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

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 64 * 1024);
  __uint(pinning, LIBBPF_PIN_BY_NAME); /* what the pinned guard saw while colo-node was down is read at its restart */
} colo_guard_events SEC(".maps");

/* A blocking call in progress, by thread: when it began (to tell a timeout from a spurious
 * EAGAIN) and, for the kretprobe, its arguments. */
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

static __always_inline void guard_count(const struct colo_addr *a, int eagain) {
  struct colo_guard_count *c = bpf_map_lookup_elem(&colo_guard_counts, a);
  if (!c) {
    struct colo_guard_count zero = {};
    bpf_map_update_elem(&colo_guard_counts, a, &zero, BPF_NOEXIST);
    c = bpf_map_lookup_elem(&colo_guard_counts, a);
    if (!c) return;
  }
  if (eagain) __sync_fetch_and_add(&c->spurious_eagain, 1);
  else __sync_fetch_and_add(&c->blocking_reads, 1);
}

/* Counts a blocking read of a pod's spliced socket; 0 when it is none. */
static __always_inline int guard_blocking_read(struct sock *sk, int flags, struct colo_addr *a) {
  if (!guard_blocking(sk, flags)) return 0;
  if (!guard_pod(sk, a)) return 0;
  struct colo_pod_info *pod = bpf_map_lookup_elem(&colo_pods, a);
  if (!pod) return 0; /* not a socket of colo's pods */
  guard_count(a, 0);
  /* In per-pod mode the pod's new connections stop being spliced from now on. */
  __u32 set = COLO_POD_SEEN_BLOCKING | ((pod->flags & COLO_POD_GUARDED) ? COLO_POD_UNSAFE : 0);
  const __u32 before = __sync_fetch_and_or(&pod->flags, set);
  if (!(before & COLO_POD_SEEN_BLOCKING)) guard_tell(COLO_GUARD_BLOCKING_READ, a, before | set);
  return 1;
}

static __always_inline void guard_spurious_eagain(struct colo_addr *a) {
  struct colo_pod_info *pod = bpf_map_lookup_elem(&colo_pods, a);
  if (!pod) return;
  guard_count(a, 1);
  const __u32 before = __sync_fetch_and_or(&pod->flags, COLO_POD_SEEN_EAGAIN);
  if (!(before & COLO_POD_SEEN_EAGAIN)) guard_tell(COLO_GUARD_SPURIOUS_EAGAIN, a, before | COLO_POD_SEEN_EAGAIN);
}

static __always_inline void guard_enter(struct sock *sk, int flags) {
  struct colo_addr a;
  if (!guard_blocking_read(sk, flags, &a)) return;
  const __u64 id = bpf_get_current_pid_tgid();
  struct colo_guard_call call = {.sk = sk, .start_ns = bpf_ktime_get_ns(), .flags = flags};
  bpf_map_update_elem(&colo_guard_calls, &id, &call, BPF_ANY);
}

static __always_inline void guard_exit(struct sock *sk, long ret) {
  const __u64 id = bpf_get_current_pid_tgid();
  struct colo_guard_call *call = bpf_map_lookup_elem(&colo_guard_calls, &id);
  if (!call) return;
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

/* int tcp_bpf_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, int flags, int *addr_len) */
SEC("fentry/tcp_bpf_recvmsg")
int BPF_PROG(colo_guard_fentry, struct sock *sk, struct msghdr *msg, __u64 len, int flags) {
  guard_enter(sk, flags);
  return 0;
}
SEC("fexit/tcp_bpf_recvmsg")
int BPF_PROG(colo_guard_fexit, struct sock *sk, struct msghdr *msg, __u64 len, int flags, int *addr_len, int ret) {
  guard_exit(sk, ret);
  return 0;
}
SEC("fentry/tcp_bpf_recvmsg_parser")
int BPF_PROG(colo_guard_fentry_parser, struct sock *sk, struct msghdr *msg, __u64 len, int flags) {
  guard_enter(sk, flags);
  return 0;
}
SEC("fexit/tcp_bpf_recvmsg_parser")
int BPF_PROG(colo_guard_fexit_parser, struct sock *sk, struct msghdr *msg, __u64 len, int flags, int *addr_len, int ret) {
  guard_exit(sk, ret);
  return 0;
}

/* Where fentry cannot load (no BPF trampolines: some kernels refuse tracing programs that
 * attach to functions): after every socket receive. Only sockets with a psock are spliced. */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(colo_guard_tp, struct sock *sk, int ret, int flags) {
  if (!((unsigned long)BPF_CORE_READ(sk, sk_user_data) & SK_USER_DATA_PSOCK)) return 0;
  struct colo_addr a;
  if (!guard_blocking_read(sk, flags, &a)) return 0;
  /* Without the call's start, only a reader without SO_RCVTIMEO is known to be early. */
  if (ret == -EAGAIN && BPF_CORE_READ(sk, sk_rcvtimeo) == MAX_SCHEDULE_TIMEOUT) guard_spurious_eagain(&a);
  return 0;
}

/* Where neither loads (no trampolines, no sock_recv_length). */
SEC("kprobe/tcp_bpf_recvmsg")
int BPF_KPROBE(colo_guard_kprobe, struct sock *sk, struct msghdr *msg, __u64 len, int flags) {
  guard_enter(sk, flags);
  return 0;
}
SEC("kretprobe/tcp_bpf_recvmsg")
int BPF_KRETPROBE(colo_guard_kretprobe, long ret) {
  const __u64 id = bpf_get_current_pid_tgid();
  struct colo_guard_call *call = bpf_map_lookup_elem(&colo_guard_calls, &id);
  if (call) guard_exit(call->sk, (int)ret);
  return 0;
}
SEC("kprobe/tcp_bpf_recvmsg_parser")
int BPF_KPROBE(colo_guard_kprobe_parser, struct sock *sk, struct msghdr *msg, __u64 len, int flags) {
  guard_enter(sk, flags);
  return 0;
}
SEC("kretprobe/tcp_bpf_recvmsg_parser")
int BPF_KRETPROBE(colo_guard_kretprobe_parser, long ret) {
  const __u64 id = bpf_get_current_pid_tgid();
  struct colo_guard_call *call = bpf_map_lookup_elem(&colo_guard_calls, &id);
  if (call) guard_exit(call->sk, (int)ret);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
