#include "datapath/bpf_skeleton.h"

#include <bpf/libbpf.h>

namespace colo::node {

Status ColoBpf::openAndLoad(const std::string& pinDir, bool ipv6) {
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinDir.c_str());
  skel_ = colo_bpf__open_opts(&opts);
  if (!skel_) return Error::fromErrno("colo_bpf__open_opts");
  skel_->rodata->colo_ipv6 = ipv6 ? 1 : 0;
  if (int err = colo_bpf__load(skel_); err != 0) return Error::fromErrno("colo_bpf__load (verifier or map mismatch)", -err);
  return {};
}

Status ColoGuardBpf::openLoadAttach(const std::string& pinDir, Hook hook, bool parser) {
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
  if (int err = colo_guard_bpf__load(skel_); err != 0) return Error::fromErrno("load", -err);
  if (int err = colo_guard_bpf__attach(skel_); err != 0) return Error::fromErrno("attach", -err);
  return {};
}

}  // namespace colo::node
