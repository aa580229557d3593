#include "pods/pod_owner.h"

#include <spdlog/spdlog.h>

namespace colo::node {

PodOwner::PodOwner() : thread_([this] { loop(); }) {}

PodOwner::~PodOwner() { stop(); }

void PodOwner::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && !onOwnerThread()) thread_.join();
}

bool PodOwner::run(Clock::time_point deadline, const std::function<void()>& fn) {
  if (onOwnerThread()) {
    fn();
    return true;
  }
  auto task = std::make_shared<Task>();
  task->deadline = deadline;
  task->fn = &fn;
  std::unique_lock lock(mu_);
  if (stopping_) return false;
  queue_.push_back(task);
  cv_.notify_one();
  // Until it starts, the caller may give up at its deadline; once it runs, it runs to the end.
  doneCv_.wait_until(lock, deadline, [&] { return task->state != Task::State::Waiting; });
  if (task->state == Task::State::Waiting) {
    task->state = Task::State::Abandoned;
    return false;
  }
  doneCv_.wait(lock, [&] { return task->state == Task::State::Done || task->state == Task::State::Abandoned; });
  if (task->error) std::rethrow_exception(task->error);
  return task->state == Task::State::Done;
}

void PodOwner::every(std::chrono::milliseconds period, std::function<void()> fn) {
  std::lock_guard lock(mu_);
  period_ = period;
  periodic_ = std::move(fn);
  cv_.notify_all();
}

void PodOwner::loop() {
  auto nextSweep = Clock::now();
  std::unique_lock lock(mu_);
  for (;;) {
    if (stopping_) {
      for (auto& t : queue_) t->state = Task::State::Abandoned;
      queue_.clear();
      doneCv_.notify_all();
      return;
    }
    if (!queue_.empty()) {
      auto task = queue_.front();
      queue_.pop_front();
      if (task->state != Task::State::Waiting) continue;
      if (Clock::now() > task->deadline) {
        task->state = Task::State::Abandoned;
        doneCv_.notify_all();
        continue;
      }
      task->state = Task::State::Running;
      lock.unlock();
      try {
        (*task->fn)();
      } catch (...) {
        task->error = std::current_exception();  // the caller's to handle
      }
      lock.lock();
      task->state = Task::State::Done;
      doneCv_.notify_all();
      continue;
    }
    if (periodic_ && period_.count() > 0) {
      if (Clock::now() >= nextSweep) {
        auto fn = periodic_;
        lock.unlock();
        try {
          fn();
        } catch (const std::exception& e) {
          spdlog::error("pods: sweep: {}", e.what());
        }
        lock.lock();
        nextSweep = Clock::now() + period_;
        continue;
      }
      cv_.wait_until(lock, nextSweep);
    } else {
      cv_.wait(lock);
    }
  }
}

}  // namespace colo::node
