// Notices the primary CNI undoing colo's edit again and again, and backs off instead of fighting
// it or giving up: a primary that restarts a few times (Calico rolling out) gets colo back each
// time after a short pause; one that rewrites its file on every change gets a re-add less and
// less often, never never.
#pragma once

#include <chrono>
#include <deque>

namespace colo::installer {

class FightDetector {
 public:
  using clock = std::chrono::steady_clock;
  FightDetector(int limit, std::chrono::seconds window, std::chrono::milliseconds firstPause, std::chrono::milliseconds maxPause)
      : limit_(limit), window_(window), first_(firstPause), max_(maxPause) {}
  // Records one re-add at `now` and returns how long to wait before the next one: zero while
  // there were fewer than `limit` within the window, then firstPause, doubling, up to maxPause.
  std::chrono::milliseconds reAdded(clock::time_point now);
  bool fighting() const { return pause_.count() > 0; }

 private:
  int limit_;
  std::chrono::seconds window_;
  std::chrono::milliseconds first_, max_;
  std::chrono::milliseconds pause_{0};
  std::deque<clock::time_point> times_;
};

}  // namespace colo::installer
