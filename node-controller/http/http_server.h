// colo-node's HTTP endpoints: /healthz /readyz /metrics /debug/pods.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "colo/common/error.h"

namespace httplib {
class Server;
}

namespace colo::node {

struct HttpSources {
  std::function<nlohmann::json()> readiness;  // {"ready": bool, "checks": {...}}
  std::function<std::string()> metrics;
  std::function<nlohmann::json()> pods;
  // /debug/pods names pods, IPs and identities: only to clients on this host unless exposed.
  bool exposeDebugPods = false;
};

class HttpServer {
 public:
  explicit HttpServer(HttpSources sources);
  ~HttpServer();
  // `address` is HOST:PORT; port 0 picks a free one (see port()).
  Status start(const std::string& address);
  void stop();
  int port() const { return port_; }

 private:
  HttpSources sources_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace colo::node
