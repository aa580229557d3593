// The one thread that changes pod state. CNI verbs, watch events, the spool, restore and the
// sweep are commands with a deadline, run here one at a time, in order. A caller waits for its
// command without holding any lock; a command that cannot start by its deadline never runs (its
// sender has given up and told the runtime so), so nothing is applied late.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace colo::node {

class PodOwner {
 public:
  using Clock = std::chrono::steady_clock;
  PodOwner();
  ~PodOwner();
  PodOwner(const PodOwner&) = delete;
  PodOwner& operator=(const PodOwner&) = delete;

  // Runs `fn` on the owner thread if it can start by `deadline`, and waits for it to finish.
  // Returns false when it did not run (deadline passed first, or stopping). What `fn` throws is
  // thrown here, on the caller's thread. From the owner thread itself, runs `fn` at once.
  bool run(Clock::time_point deadline, const std::function<void()>& fn);
  // Runs `fn` on the owner thread every `period` (the sweep), between commands.
  void every(std::chrono::milliseconds period, std::function<void()> fn);
  void stop();
  bool onOwnerThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  struct Task {
    enum class State { Waiting, Running, Done, Abandoned } state = State::Waiting;
    Clock::time_point deadline;
    const std::function<void()>* fn = nullptr;
    std::exception_ptr error;
  };
  void loop();
  std::mutex mu_;  // guards queue_, every Task's state, periodic_, stopping_; never held while a command runs
  std::condition_variable cv_;       // the owner: work arrived
  std::condition_variable doneCv_;   // callers: a task changed state
  std::deque<std::shared_ptr<Task>> queue_;
  std::chrono::milliseconds period_{0};
  std::function<void()> periodic_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace colo::node
