// The pods of this node, from the API: a paged list, then a watch from the list's
// resourceVersion, for as long as the agent runs. 410 Expired (as an HTTP status or an ERROR
// event) means relist; a dropped stream reconnects after a jittered exponential backoff; a watch
// that goes silent past its timeout is restarted.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kube/api_client.h"
#include "metrics.h"
#include "pods/pod_meta.h"

namespace colo::node::kube {

struct WatcherSettings {
  std::string nodeName;
  int pageSize = 500;
  int watchTimeoutSeconds = 300;  // asked of the server; silence past this (+5 s) restarts the watch
  std::size_t maxLine = 16u << 20;  // a watch event longer than this is logged and answered by a relist
  std::chrono::milliseconds backoffBase{250};
  // Capped low so that colo converges within seconds of the API returning; jitter spreads a fleet.
  std::chrono::milliseconds backoffMax{4000};
  std::chrono::milliseconds requestTimeout{10000};
};

class PodWatcherSink {
 public:
  virtual ~PodWatcherSink() = default;
  // A full list: every pod of this node, and when the list began (pods newer than that may be missing).
  // `unidentified`: "ns/name" ("*" when even that is missing) of listed objects without a uid.
  virtual void synced(const std::vector<PodMeta>& all, std::int64_t listStartUnixMs, const std::set<std::string>& unidentified) = 0;
  // Returns what the update did ("on", "off", ...): latencies are kept per kind.
  virtual std::string upserted(const PodMeta& pod) = 0;
  virtual void deleted(const PodMeta& pod) = 0;
};

class PodWatcher {
 public:
  PodWatcher(ApiClient& api, WatcherSettings settings, PodWatcherSink& sink, Metrics& metrics);
  ~PodWatcher();
  void start();
  void stop();

  // The API's view of a pod: from the watch's cache, else a GET bounded by the deadline.
  std::optional<PodMeta> lookup(const std::string& ns, const std::string& name, const std::string& uid,
                                std::chrono::steady_clock::time_point deadline);
  bool synced() const { return synced_; }
  // Sets the apply-latency quantiles from the samples kept; called when /metrics is scraped, so
  // the watcher thread only appends a sample per event.
  void publishMetrics() const;
  nlohmann::json status() const;
  std::size_t cachedPods() const;

 private:
  enum class End { Expired, Closed, Silent, Dropped, Refused, TooLong, Stopped };
  void run();
  bool list();
  End watch(bool& progressed);
  void handleEvent(std::string_view line, End& end, std::chrono::steady_clock::time_point arrival);
  void clearError();
  void sleepBackoff(int failures);
  void recordApply(const std::string& change, double seconds);
  void setError(const std::string& e);
  std::string selector() const;

  ApiClient& api_;
  WatcherSettings settings_;
  PodWatcherSink& sink_;
  Metrics& metrics_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> synced_{false};
  std::mutex waitMu_;
  std::condition_variable waitCv_;
  std::mt19937 rng_{std::random_device{}()};

  mutable std::mutex mu_;  // guards what follows
  std::string resourceVersion_, lastError_;
  std::map<std::string, PodMeta> byUid_;
  std::map<std::string, std::string> uidByName_;  // "ns/name" -> uid
  struct Window {
    std::vector<double> samples;
    std::size_t next = 0;
  };
  std::map<std::string, Window> apply_;  // by change: the last 4096 each
};

}  // namespace colo::node::kube
