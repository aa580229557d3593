// One colo-node per bpffs pin directory. kind nodes (and any containers sharing the host's
// bpffs) would otherwise update each other's pinned link and maps. A claim is an flock on the
// directory (refused while another colo-node holds it) plus a pinned marker "owner_<node>"
// (refused when another node's colo-node pinned there before, even if it is not running now).
#pragma once

#include <string>

#include "colo/common/error.h"
#include "colo/common/unique_fd.h"

namespace colo::node {

class PinOwner {
 public:
  // Locks `dir` (which must exist) for `node`; a clear error naming the other owner otherwise.
  static Expected<PinOwner> claim(const std::string& dir, const std::string& node);
  // Pins `bpfFd` (any of colo's maps) as this node's marker, once the maps exist.
  Status mark(int bpfFd) const;
  // bpffs refuses '.' in names: node names like ip-10-0-0-1.ec2.internal become ..._ec2_internal.
  static std::string safeName(const std::string& node);

 private:
  UniqueFd lock_;
  std::string dir_, node_;
};

}  // namespace colo::node
