// A bounded pool of threads for short slow work done on behalf of a pod (a socket made inside its
// netns, a channel's memory set up), so that server loops never do it themselves. Bounded twice:
// the queue as a whole, and each key's (pod's) share of it, so that one pod can only fill its own.
// Jobs must not wait on anything open-ended: a TCP connect is started here and waited for by the
// server loop (see SeqpacketServer's Reply::wait).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace colo::node {

class WorkerPool {
 public:
  WorkerPool(std::size_t threads, std::size_t maxQueued, std::size_t perKeyShare);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `job` under `key`. False when the queue is full or `key` already has its share queued
  // or running: the caller answers resource_exhausted.
  [[nodiscard]] bool submit(const std::string& key, std::function<void()> job);
  // Drops queued jobs (unrun) and joins the threads once running jobs end.
  void stop();
  std::size_t share() const { return share_; }
  std::size_t pending(const std::string& key) const;

 private:
  struct Job {
    std::string key;
    std::function<void()> fn;
  };
  void run();
  const std::size_t maxQueued_, share_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::map<std::string, std::size_t> perKey_;  // queued + running
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace colo::node
