// Kubernetes Events on pods (kubectl describe pod shows them), posted from a queue on a thread of
// their own so that neither CNI nor the watch ever waits for the API. The same event for the same
// pod is posted at most once per 10 minutes.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "kube/api_client.h"
#include "metrics.h"
#include "pods/pod.h"

namespace colo::node::kube {

class EventRecorder {
 public:
  EventRecorder(ApiClient& api, std::string nodeName, Metrics& metrics);
  ~EventRecorder();
  void start();
  void stop();
  void record(const Pod& pod, const std::string& type, const std::string& reason, const std::string& message);

  // The Event object as posted (exposed for tests).
  static nlohmann::json eventFor(const Pod& pod, const std::string& type, const std::string& reason, const std::string& message,
                                 const std::string& node);

 private:
  void run();
  ApiClient& api_;
  std::string node_;
  Metrics& metrics_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<nlohmann::json> queue_;
  std::map<std::string, std::chrono::steady_clock::time_point> recent_;
  bool stopping_ = false;
};

}  // namespace colo::node::kube
