#include "datapath/bpf_skeleton.h"

#include <bpf/libbpf.h>
#include <unistd.h>

#include <filesystem>

namespace colo::node {

Status ColoBpf::openAndLoad(const std::string& pinDir, bool ipv6) {
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinDir.c_str());
  skel_ = colo_bpf__open_opts(&opts);
  if (!skel_) return Error::fromErrno("colo_bpf__open_opts");
  skel_->rodata->colo_ipv6 = ipv6 ? 1 : 0;
  if (int err = colo_bpf__load(skel_); err != 0) return Error::fromErrno("colo_bpf__load (verifier or map mismatch)", -err);
  return {};
}

Status ColoGuardBpf::openLoadAttach(const std::string& pinDir, Hook hook, bool parser, bool splice) {
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinDir.c_str());
  skel_ = colo_guard_bpf__open_opts(&opts);
  if (!skel_) return Error::fromErrno("colo_guard_bpf__open_opts");
  auto& p = skel_->progs;
  const struct {
    bpf_program* prog;
    Hook hook;
    bool onParser;
  } all[] = {{p.colo_guard_fentry, Hook::Fentry, false},       {p.colo_guard_fexit, Hook::Fentry, false},
             {p.colo_guard_fentry_parser, Hook::Fentry, true}, {p.colo_guard_fexit_parser, Hook::Fentry, true},
             {p.colo_guard_tp, Hook::Tracepoint, false},       {p.colo_guard_kprobe, Hook::Kprobe, false},
             {p.colo_guard_kretprobe, Hook::Kprobe, false},    {p.colo_guard_kprobe_parser, Hook::Kprobe, true},
             {p.colo_guard_kretprobe_parser, Hook::Kprobe, true}};
  for (const auto& a : all) bpf_program__set_autoload(a.prog, a.hook == hook && (parser || !a.onParser));
  // The splice(2) watch is attached on its own (attachSplice): the guard works without it.
  bpf_program__set_autoload(p.colo_guard_splice, splice);
  bpf_program__set_autoattach(p.colo_guard_splice, false);
  if (int err = colo_guard_bpf__load(skel_); err != 0) return Error::fromErrno("load", -err);
  if (int err = colo_guard_bpf__attach(skel_); err != 0) return Error::fromErrno("attach", -err);
  return {};
}

Status ColoGuardBpf::attachSplice() {
  if (skel_->links.colo_guard_splice) return {};  // a libbpf that auto-attached it anyway
  bpf_link* link = bpf_program__attach(skel_->progs.colo_guard_splice);
  if (!link) return Error::fromErrno("attach tracepoint syscalls/sys_enter_splice (tracefs mounted at /sys/kernel/tracing?)");
  skel_->links.colo_guard_splice = link;  // destroyed and pinned with the skeleton's other links
  return {};
}

// The guard's links are pinned next to the sock_ops link: while colo-node is stopped (upgrade,
// SIGKILL) spliced sockets keep being guarded (a pod is marked unsafe in colo_pods by the guard
// itself). The new guard is attached before the old one's pins go, so there is no unguarded gap.
Status ColoGuardBpf::pinLinks(const std::string& pinDir) {
  unpinLinks(pinDir);
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel_->obj) {
    bpf_link* link = nullptr;
    for (int i = 0; i < skel_->skeleton->prog_cnt; ++i) {
      if (*skel_->skeleton->progs[i].prog == prog) link = *skel_->skeleton->progs[i].link;
    }
    if (!link) continue;
    const std::string path = pinDir + "/" + kLinkPinPrefix + bpf_program__name(prog);
    if (int err = bpf_link__pin(link, path.c_str()); err != 0) return Error::fromErrno("bpf_link__pin(" + path + ")", -err);
  }
  return {};
}

int ColoGuardBpf::unpinLinks(const std::string& pinDir) {
  std::error_code ec;
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(pinDir, ec)) {
    if (e.path().filename().string().rfind(kLinkPinPrefix, 0) == 0 && ::unlink(e.path().c_str()) == 0) ++n;
  }
  return n;
}

}  // namespace colo::node
