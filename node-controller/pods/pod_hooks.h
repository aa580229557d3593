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
  // Undoes attach. Idempotent: what is already undone is skipped, so a failed detach is retried
  // by calling it again. Fails when something could not be undone (it stays, and says what).
  virtual Status detach(const Pod& pod) = 0;
  // CHECK: whether what attach made for an active pod is all still there and as it was.
  virtual Status verify(const Pod& pod, int netnsFd) { (void)pod, (void)netnsFd; return {}; }
  // An active pod's annotations changed in a way that needs no re-attach (colo.dev/splice).
  virtual void annotationsChanged(const Pod& pod) { (void)pod; }
};

// Runs several hooks in order; detaches in reverse. A failed attach undoes the ones before it.
class CompositeHooks final : public PodHooks {
 public:
  explicit CompositeHooks(std::vector<PodHooks*> hooks) : hooks_(std::move(hooks)) {}
  Status attach(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings) override {
    for (std::size_t i = 0; i < hooks_.size(); ++i) {
      if (auto s = hooks_[i]->attach(pod, netnsFd, failOpen, warnings); !s) {
        while (i-- > 0) (void)hooks_[i]->detach(pod);
        return s;
      }
    }
    return {};
  }
  Status detach(const Pod& pod) override {
    Status first;
    for (auto it = hooks_.rbegin(); it != hooks_.rend(); ++it) {
      if (auto s = (*it)->detach(pod); !s && first) first = s;  // every hook is tried; the first failure is told
    }
    return first;
  }
  void annotationsChanged(const Pod& pod) override {
    for (auto* h : hooks_) h->annotationsChanged(pod);
  }
  Status verify(const Pod& pod, int netnsFd) override {
    for (auto* h : hooks_) {
      if (auto s = h->verify(pod, netnsFd); !s) return s;
    }
    return {};
  }

 private:
  std::vector<PodHooks*> hooks_;
};

class NoHooks final : public PodHooks {
 public:
  Status attach(Pod&, int, bool, std::vector<std::string>&) override { return {}; }
  Status detach(const Pod&) override { return {}; }
};

}  // namespace colo::node
