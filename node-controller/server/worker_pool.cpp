#include "server/worker_pool.h"

namespace colo::node {

WorkerPool::WorkerPool(std::size_t threads, std::size_t maxQueued, std::size_t perKeyShare) : maxQueued_(maxQueued), share_(perKeyShare) {
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

WorkerPool::~WorkerPool() { stop(); }

bool WorkerPool::submit(const std::string& key, std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= maxQueued_) return false;
    auto& n = perKey_[key];
    if (n >= share_) return false;
    ++n;
    queue_.push_back(Job{key, std::move(job)});
  }
  cv_.notify_one();
  return true;
}

std::size_t WorkerPool::pending(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = perKey_.find(key);
  return it == perKey_.end() ? 0 : it->second;
}

void WorkerPool::stop() {
  std::deque<Job> dropped;
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    dropped.swap(queue_);
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void WorkerPool::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job.fn();
    job.fn = nullptr;  // whatever it captured goes before the share is given back
    std::lock_guard lock(mu_);
    if (auto it = perKey_.find(job.key); it != perKey_.end() && --it->second == 0) perKey_.erase(it);
  }
}

}  // namespace colo::node
