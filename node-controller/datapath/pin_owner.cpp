#include "datapath/pin_owner.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>

namespace colo::node {

std::string PinOwner::safeName(const std::string& node) {
  std::string out = node;
  for (auto& c : out) {
    if (c == '.' || c == '/') c = '_';
  }
  return out;
}

Expected<PinOwner> PinOwner::claim(const std::string& dir, const std::string& node) {
  PinOwner o;
  o.dir_ = dir;
  o.node_ = safeName(node);
  o.lock_ = UniqueFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!o.lock_) return Error::fromErrno("open(" + dir + ")");
  if (::flock(o.lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Error::make("busy", "pin dir " + dir + " is held by another colo-node running on this bpffs (kind nodes share the host's): "
                                 "give every node its own bpfPinDir (the chart's default, /sys/fs/bpf/colo-{node}, does)");
    }
    return Error::fromErrno("flock(" + dir + ")");
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("owner_", 0) == 0 && name != "owner_" + o.node_) {
      return Error::make("busy", "pin dir " + dir + " holds the datapath of node " + name.substr(6) + " (its colo-node pinned there); this is node " +
                                     node + ": give every node its own bpfPinDir, or remove " + dir + " with `colo-node uninstall --bpf-pin-dir " +
                                     dir + "` if that node is gone");
    }
  }
  return o;
}

Status PinOwner::mark(int bpfFd) const {
  const std::string path = dir_ + "/owner_" + node_;
  if (::access(path.c_str(), F_OK) == 0) return {};
  if (::bpf_obj_pin(bpfFd, path.c_str()) != 0) return Error::fromErrno("bpf_obj_pin(" + path + ")");
  return {};
}

}  // namespace colo::node
