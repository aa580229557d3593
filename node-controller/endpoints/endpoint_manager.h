// Per-pod endpoints: @colo bound inside the pod's netns, /run/colo/pods/<key>/colo.sock, and the
// pod's hugetlbfs mount at /run/colo/pods/<key>/hugepages.
#pragma once

#include <mutex>
#include <set>
#include <string>

#include "config.h"
#include "hugepages/hugepage_manager.h"
#include "metrics.h"
#include "pods/pod_hooks.h"
#include "server/seqpacket_server.h"

namespace colo::node {

inline constexpr const char* kHugepagesAnnotation = "colo.dev/hugepages";

class EndpointManager final : public PodHooks {
 public:
  EndpointManager(const Config& config, SeqpacketServer& server, HugepageManager& hugepages, Metrics& metrics);

  // Creates the pods directory once, at start, so that attach (on every pod's start) need not.
  Status prepare();
  Status attach(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings) override;
  Status detach(const Pod& pod) override;
  // @<name> listening in the pod's netns, colo.sock present, the hugetlbfs mount with its size.
  Status verify(const Pod& pod, int netnsFd) override;

  // <podsDir>/<key>, or, when <podsDir>/<key>/colo.sock would not fit a socket address (108
  // bytes; container ids may be 256 characters), <podsDir>/<first 16 of key>-<SHA-256 of key, 24 hex>.
  std::string dirFor(const std::string& key) const { return podsDir_ + "/" + dirName(key); }
  std::string dirName(const std::string& key) const;
  const std::string& podsDir() const { return podsDir_; }
  // Removes pod directories (and their mounts) that no held pod owns: left by a crash.
  void removeOrphans(const std::vector<std::string>& heldKeys);

 private:
  Status hugepagesFor(Pod& pod, bool failOpen, std::vector<std::string>& warnings);
  std::size_t track(const std::string& key, bool attached);  // pods with endpoints, after the change
  const Config& config_;
  SeqpacketServer& server_;
  HugepageManager& hugepages_;
  Metrics& metrics_;
  std::string podsDir_;
  std::mutex mu_;
  std::set<std::string> attached_;
};

}  // namespace colo::node
