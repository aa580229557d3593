/* colo's guard: entry points only, one set per way in; the logic is in colo_guard.h. colo-node
 * loads the first way that works on the kernel: fentry/fexit on tcp_bpf_recvmsg and
 * tcp_bpf_recvmsg_parser (needs BPF trampolines); the sock_recv_length tracepoint (Linux 6.3+);
 * kprobe/kretprobe on the same functions. The splice(2) watch (tracepoint
 * syscalls/sys_enter_splice) goes with any of them. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "colo_guard.h"

/* int tcp_bpf_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, int flags, int *addr_len),
 * and tcp_bpf_recvmsg_parser with the same arguments. */
SEC("fentry/tcp_bpf_recvmsg")
int BPF_PROG(colo_guard_fentry, struct sock *sk, struct msghdr *msg, __u64 len, int flags) {
  guard_enter(sk, flags);
  return 0;
}
SEC("fexit/tcp_bpf_recvmsg")
int BPF_PROG(colo_guard_fexit, struct sock *sk, struct msghdr *msg, __u64 len, int flags, int *addr_len, int ret) {
  guard_return(ret);
  return 0;
}
SEC("fentry/tcp_bpf_recvmsg_parser")
int BPF_PROG(colo_guard_fentry_parser, struct sock *sk, struct msghdr *msg, __u64 len, int flags) {
  guard_enter(sk, flags);
  return 0;
}
SEC("fexit/tcp_bpf_recvmsg_parser")
int BPF_PROG(colo_guard_fexit_parser, struct sock *sk, struct msghdr *msg, __u64 len, int flags, int *addr_len, int ret) {
  guard_return(ret);
  return 0;
}

/* Where fentry cannot load (no BPF trampolines): after every socket receive. */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(colo_guard_tp, struct sock *sk, int ret, int flags) {
  guard_received(sk, ret, flags);
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
  guard_return((int)ret);
  return 0;
}
SEC("kprobe/tcp_bpf_recvmsg_parser")
int BPF_KPROBE(colo_guard_kprobe_parser, struct sock *sk, struct msghdr *msg, __u64 len, int flags) {
  guard_enter(sk, flags);
  return 0;
}
SEC("kretprobe/tcp_bpf_recvmsg_parser")
int BPF_KRETPROBE(colo_guard_kretprobe_parser, long ret) {
  guard_return((int)ret);
  return 0;
}

/* splice(2) readers: no sockmap receive function runs for them (tcp_splice_read reads the
 * socket's own queue), so they are caught at the system call. The layout is the syscall
 * tracepoint's (events/syscalls/sys_enter_splice/format): an 8-byte common header, the syscall
 * number, then each argument as 8 bytes. */
struct colo_sys_enter_splice {
  __u64 common;
  __s32 nr;
  __u32 pad;
  __u64 fd_in, off_in, fd_out, off_out, len, flags;
};
SEC("tracepoint/syscalls/sys_enter_splice")
int colo_guard_splice(struct colo_sys_enter_splice *ctx) {
  guard_splice_from((int)ctx->fd_in);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
