// What happens to a pod beyond the registry when colo-node takes or releases it (its endpoint,
// its hugepages, later its datapath entry). An interface, so the CNI logic is tested alone.
#pragma once

#include <string>
#include <vector>

#include "colo/common/error.h"
#include "pods/pod.h"

namespace colo::node {

class PodHooks {
 public:
  virtual ~PodHooks() = default;
  // Sets up everything for `pod` (may fill pod.hugepageBytes, pod.endpointDir). On error nothing
  // is left behind. With `failOpen`, optional parts that cannot be had are skipped and reported
  // in `warnings` instead of failing.
  virtual Status attach(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings) = 0;
  // Undoes attach. Idempotent; never fails.
  virtual void detach(const Pod& pod) = 0;
};

// Runs several hooks in order; detaches in reverse. A failed attach undoes the ones before it.
class CompositeHooks final : public PodHooks {
 public:
  explicit CompositeHooks(std::vector<PodHooks*> hooks) : hooks_(std::move(hooks)) {}
  Status attach(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings) override {
    for (std::size_t i = 0; i < hooks_.size(); ++i) {
      if (auto s = hooks_[i]->attach(pod, netnsFd, failOpen, warnings); !s) {
        while (i-- > 0) hooks_[i]->detach(pod);
        return s;
      }
    }
    return {};
  }
  void detach(const Pod& pod) override {
    for (auto it = hooks_.rbegin(); it != hooks_.rend(); ++it) (*it)->detach(pod);
  }

 private:
  std::vector<PodHooks*> hooks_;
};

class NoHooks final : public PodHooks {
 public:
  Status attach(Pod&, int, bool, std::vector<std::string>&) override { return {}; }
  void detach(const Pod&) override {}
};

}  // namespace colo::node
