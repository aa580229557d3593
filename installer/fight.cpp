#include "fight.h"

#include <algorithm>

namespace colo::installer {

std::chrono::milliseconds FightDetector::reAdded(clock::time_point now) {
  // The window counts from the end of the last pause, so a pause itself never looks like calm.
  times_.push_back(now);
  while (!times_.empty() && now - times_.front() > window_ + pause_) times_.pop_front();
  if (static_cast<int>(times_.size()) < limit_) {
    pause_ = std::chrono::milliseconds(0);
  } else {
    pause_ = pause_.count() == 0 ? first_ : std::min(pause_ * 2, max_);
  }
  return pause_;
}

}  // namespace colo::installer
