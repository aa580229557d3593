// Warnings a client can trigger at will (a refused connection, a denied dial) are rate-limited
// per cause, so that a flood costs a few lines, not megabytes: the first `burst` lines of a key
// in each window are logged, the rest only counted; when the window ends, one line says how many
// like it were left out. Counters (metrics) keep the exact counts; the log is for reading.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace colo::node {

class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  // report(key, suppressed): one summary line for a window that dropped lines.
  using Report = std::function<void(const std::string& key, std::uint64_t suppressed)>;
  explicit LogLimiter(Report report, std::size_t burst = 5, std::chrono::milliseconds window = std::chrono::seconds(10),
                      std::size_t maxKeys = 1024);

  // Whether to log a line of cause `key` now. Keys beyond maxKeys share one ("other"), so that
  // counting causes cannot grow without bound either.
  bool allow(const std::string& key, Clock::time_point now = Clock::now());
  // Summarises and forgets the windows that have ended (on a timer, so that the last window of a
  // flood that stopped is summarised too; allow() does it for its own key).
  void sweep(Clock::time_point now = Clock::now());
  std::uint64_t suppressedTotal() const;

 private:
  struct Window {
    Clock::time_point start;
    std::size_t logged = 0;
    std::uint64_t suppressed = 0;
  };
  const Report report_;
  const std::size_t burst_, maxKeys_;
  const std::chrono::milliseconds window_;
  mutable std::mutex mu_;
  std::map<std::string, Window> windows_;
  std::uint64_t suppressedTotal_ = 0;
};

// colo-node's one limiter for client-triggered warnings (any thread); its summaries go to the
// log as warnings: "<key>: N more like it not logged in the last 10 s". The server loops sweep it.
LogLimiter& warnLimiter();

}  // namespace colo::node
