// A list, then a watch from the list's resourceVersion, of one kind of object in every namespace
// (Services, EndpointSlices), for as long as the agent runs: the same rules as the pod watcher
// (410 relists, a dropped stream backs off, a silent one restarts), feeding whole objects to a sink.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kube/api_client.h"
#include "kube/pod_watcher.h"
#include "metrics.h"

namespace colo::node::kube {

class ResourceWatcher {
 public:
  struct Sink {
    // A full list, item by item as each page is read (so that a list of thousands of objects is
    // never held as JSON at once): begin, every item, end. Begin again means start over.
    std::function<void()> listBegin;
    std::function<void(const nlohmann::json&)> listItem;
    std::function<void()> listEnd;
    std::function<void(const std::string& type, const nlohmann::json& obj)> changed;  // ADDED/MODIFIED/DELETED
  };
  // path: the collection, e.g. "/api/v1/services"; kind: its name in logs and metrics.
  ResourceWatcher(ApiClient& api, std::string path, std::string kind, WatcherSettings settings, Sink sink, Metrics& metrics);
  ~ResourceWatcher();
  void start();
  void stop();
  bool synced() const { return synced_; }

 private:
  enum class End { Expired, Closed, Silent, Dropped, Refused, Stopped };
  void run();
  bool list();
  End watch();
  void sleepBackoff(int failures);

  ApiClient& api_;
  std::string path_, kind_;
  WatcherSettings settings_;
  Sink sink_;
  Metrics& metrics_;
  std::thread thread_;
  std::atomic<bool> stopping_{false}, synced_{false};
  std::mutex waitMu_;
  std::condition_variable waitCv_;
  std::mt19937 rng_{std::random_device{}()};
  std::string resourceVersion_;  // watcher thread only
};

}  // namespace colo::node::kube
