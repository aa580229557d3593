// Whether colo-cni is in the node's CNI chain right now, as the installer sidecar writes it
// (colo-cni-installer --status-file). A DaemonSet that is Ready must mean that pods get colo, so
// colo-node reports it in /readyz (and is not ready without it), in the colo_cni_chained gauge,
// and as an Event on its own pod each time it changes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "metrics.h"

namespace colo::node {

class ChainStatus {
 public:
  // onChange(chained, message) runs on the monitor's thread when the state changes (and once at
  // the first reading).
  ChainStatus(std::string statusFile, Metrics& metrics, std::function<void(bool, const std::string&)> onChange);
  ~ChainStatus();
  void start();
  void stop();
  // Reads the file now (also what the thread does every second).
  void refresh();
  bool chained() const;
  nlohmann::json status() const;  // {"chained", "file", "message", ...} as the installer wrote it

 private:
  std::string file_;
  Metrics& metrics_;
  std::function<void(bool, const std::string&)> onChange_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  nlohmann::json status_;
  int last_ = -1;  // -1 unknown, 0 not chained, 1 chained
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace colo::node
