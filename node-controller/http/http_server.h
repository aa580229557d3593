// colo-node's HTTP endpoints: /healthz /readyz /metrics /debug/pods.
//
// One event-loop thread, non-blocking sockets, one request per connection. Whoever can reach the
// port (any host user, on the node's address anyone on the network) gets no way to hold it: a
// request head must arrive whole within kHeadDeadline, the answer must be taken within
// kWriteDeadline, and when all kMaxConnections are taken the connection that has waited longest
// for its request is dropped to make room. So kubelet's probes, which send their request at once,
// are answered whatever else is connected, and stop() returns at once.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "colo/common/error.h"
#include "colo/common/unique_fd.h"

namespace colo::node {

struct HttpSources {
  std::function<nlohmann::json()> readiness;  // {"ready": bool, "checks": {...}}
  std::function<std::string()> metrics;
  std::function<nlohmann::json()> pods;
  // /debug/pods names pods, IPs and identities: only to clients on this host unless exposed.
  bool exposeDebugPods = false;
};

struct HttpLimits {
  std::size_t maxConnections = 64;
  std::chrono::milliseconds headDeadline{2000};
  std::chrono::milliseconds writeDeadline{5000};
};

class HttpServer {
 public:
  explicit HttpServer(HttpSources sources, HttpLimits limits = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // `address` is HOST:PORT ([v6]:PORT); port 0 picks a free one (see port()).
  Status start(const std::string& address);
  void stop();
  int port() const { return port_; }

 private:
  void loop();

  HttpSources sources_;
  HttpLimits limits_;
  UniqueFd listener_, epoll_, wake_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace colo::node
