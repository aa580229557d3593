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

}  // namespace colo::node
