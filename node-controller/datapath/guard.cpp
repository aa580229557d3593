#include "datapath/guard.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstring>

namespace colo::node {
namespace {

const char* kVmlinuxBtf = "/sys/kernel/btf/vmlinux";

bool kernelHasFunc(const btf* vmlinux, const char* name) { return btf__find_by_name_kind(vmlinux, name, BTF_KIND_FUNC) > 0; }

// The splice(2) watch is a perf tracepoint: libbpf finds its id in tracefs. A container's /sys
// (the chart's colo-node) has none mounted: mount it, as bpffs is mounted when missing.
void ensureTracefs() {
  const char* dir = "/sys/kernel/tracing";
  struct statfs fs{};
  if (::statfs(dir, &fs) == 0 && static_cast<unsigned long>(fs.f_type) == TRACEFS_MAGIC) return;
  if (::access("/sys/kernel/debug/tracing/events", F_OK) == 0) return;  // debugfs's view, which libbpf uses when present
  if (::mount("tracefs", dir, "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0) {
    spdlog::info("datapath: guard: mounted tracefs at {} (for the splice(2) watch)", dir);
  } else {
    spdlog::debug("datapath: guard: cannot mount tracefs at {}: {}", dir, std::strerror(errno));
  }
}

}  // namespace

Expected<std::unique_ptr<Guard>> Guard::load(const std::string& pinDir, Sink sink) {
  struct stat st{};
  if (::stat(kVmlinuxBtf, &st) != 0) {
    return Error::make("unavailable", std::string("the kernel has no BTF (") + kVmlinuxBtf +
                                          "): the guard cannot find a socket's pod in the kernel's structures");
  }
  btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) return Error::fromErrno("btf__load_vmlinux_btf");
  const bool recvmsg = kernelHasFunc(vmlinux, "tcp_bpf_recvmsg"), parser = kernelHasFunc(vmlinux, "tcp_bpf_recvmsg_parser");
  const bool tracepoint = btf__find_by_name_kind(vmlinux, "btf_trace_sock_recv_length", BTF_KIND_TYPEDEF) > 0;
  btf__free(vmlinux);
  if (!recvmsg) return Error::make("unavailable", "the kernel has no tcp_bpf_recvmsg to watch (not a sockmap kernel colo knows)");
  const std::string fns = parser ? "tcp_bpf_recvmsg and tcp_bpf_recvmsg_parser" : "tcp_bpf_recvmsg";

  ensureTracefs();
  std::unique_ptr<Guard> g(new Guard());
  g->sink_ = std::move(sink);
  using Hook = ColoGuardBpf::Hook;
  const struct {
    Hook hook;
    const char* name;
    bool available;
  } ways[] = {{Hook::Fentry, "fentry/fexit", true},
              {Hook::Tracepoint, "tracepoint sock_recv_length", tracepoint},
              {Hook::Kprobe, "kprobe/kretprobe", true}};
  std::string tried, spliceWhy;
  for (const auto& w : ways) {
    if (!w.available) {
      tried += std::string(tried.empty() ? "" : "; ") + w.name + ": not in this kernel";
      continue;
    }
    // With the splice(2) watch first; should that be what fails to load, the way without it.
    for (const bool splice : {true, false}) {
      g->bpf_ = std::make_unique<ColoGuardBpf>();
      auto s = g->bpf_->openLoadAttach(pinDir, w.hook, parser, splice);
      if (s) {
        g->how_ = std::string(w.name) + (w.hook == Hook::Tracepoint ? " (sockets in a sockmap)" : " on " + fns) +
                  (tried.empty() ? "" : " (" + tried + ")");
        if (splice) {
          if (auto a = g->bpf_->attachSplice(); a) g->splice_ = true;
          else spliceWhy = a.error().message;
        }
        break;
      }
      if (splice) spliceWhy = "with it the guard did not load: " + s.error().message;
      else tried += std::string(tried.empty() ? "" : "; ") + w.name + ": " + s.error().message;
      g->bpf_.reset();
    }
    if (g->bpf_) break;
  }
  if (!g->bpf_) return Error::make("unavailable", tried);
  g->how_ += g->splice_ ? "; splice(2) readers: tracepoint syscalls/sys_enter_splice"
                        : "; splice(2) readers NOT watched (" + spliceWhy + ")";
  if (auto s = g->bpf_->pinLinks(pinDir); !s) return Error::make("unavailable", "pin the guard: " + s.error().message);
  g->rb_ = ring_buffer__new(bpf_map__fd((*g->bpf_)->maps.colo_guard_events), &Guard::onSample, g.get(), nullptr);
  if (!g->rb_) return Error::fromErrno("ring_buffer__new(colo_guard_events)");
  Guard* self = g.get();
  g->thread_ = std::thread([self] {
    while (!self->stop_.load()) {
      const int n = ring_buffer__poll(self->rb_, 200);
      if (n < 0 && n != -EINTR) break;
    }
  });
  return g;
}

Guard::~Guard() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (rb_) ring_buffer__free(rb_);
}

int Guard::onSample(void* ctx, void* data, std::size_t size) {
  auto* self = static_cast<Guard*>(ctx);
  if (size < sizeof(colo_guard_event) || !self->sink_) return 0;
  colo_guard_event e{};
  std::memcpy(&e, data, sizeof(e));
  GuardEvent out;
  out.kind = e.kind;
  out.pid = e.pid;
  out.tid = e.tid;
  out.flags = e.flags;
  out.addr = e.addr;
  out.comm.assign(e.comm, ::strnlen(e.comm, sizeof(e.comm)));
  self->sink_(out);
  return 0;
}

std::optional<colo_guard_count> Guard::count(const colo_addr& a) const {
  colo_guard_count c{};
  if (::bpf_map_lookup_elem(bpf_map__fd((*bpf_)->maps.colo_guard_counts), &a, &c) != 0) return colo_guard_count{};
  return c;
}

std::uint64_t Guard::spliceReads(const colo_addr& a) const {
  std::uint64_t n = 0;
  if (::bpf_map_lookup_elem(bpf_map__fd((*bpf_)->maps.colo_guard_splices), &a, &n) != 0) return 0;
  return n;
}

void Guard::forget(const colo_addr& a) {
  ::bpf_map_delete_elem(bpf_map__fd((*bpf_)->maps.colo_guard_counts), &a);
  ::bpf_map_delete_elem(bpf_map__fd((*bpf_)->maps.colo_guard_splices), &a);
}

}  // namespace colo::node
