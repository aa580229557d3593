#include "log/log_limiter.h"

#include <spdlog/spdlog.h>

namespace colo::node {

LogLimiter::LogLimiter(Report report, std::size_t burst, std::chrono::milliseconds window, std::size_t maxKeys)
    : report_(std::move(report)), burst_(burst), maxKeys_(maxKeys), window_(window) {}

bool LogLimiter::allow(const std::string& key, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = windows_.find(key);
  if (it == windows_.end()) {
    if (windows_.size() >= maxKeys_) it = windows_.try_emplace("other", Window{now}).first;
    else it = windows_.emplace(key, Window{now}).first;
  } else if (now - it->second.start >= window_) {
    if (it->second.suppressed > 0 && report_) report_(it->first, it->second.suppressed);
    it->second = Window{now};
  }
  Window& w = it->second;
  if (w.logged < burst_) {
    ++w.logged;
    return true;
  }
  ++w.suppressed;
  ++suppressedTotal_;
  return false;
}

void LogLimiter::sweep(Clock::time_point now) {
  std::lock_guard lock(mu_);
  for (auto it = windows_.begin(); it != windows_.end();) {
    if (now - it->second.start < window_) {
      ++it;
      continue;
    }
    if (it->second.suppressed > 0 && report_) report_(it->first, it->second.suppressed);
    it = windows_.erase(it);
  }
}

std::uint64_t LogLimiter::suppressedTotal() const {
  std::lock_guard lock(mu_);
  return suppressedTotal_;
}

LogLimiter& warnLimiter() {
  static LogLimiter limiter([](const std::string& key, std::uint64_t n) {
    spdlog::warn("{}: {} more like it not logged in the last 10 s (rate limit; counters have them all)", key, n);
  });
  return limiter;
}

}  // namespace colo::node
