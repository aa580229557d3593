// A SOCK_SEQPACKET server speaking the colo wire protocol on one thread. Each request is decoded,
// checked and handed to the handler; every failure becomes an error reply or a closed connection,
// never a crash.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "colo/common/error.h"
#include "colo/common/unique_fd.h"
#include "colo/common/wire.h"
#include "metrics.h"

namespace colo::node {

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

using RequestHandler = std::function<nlohmann::json(wire::Message&, const PeerCred&)>;

class SeqpacketServer {
 public:
  SeqpacketServer(std::string name, Metrics& metrics, RequestHandler handler);
  ~SeqpacketServer();
  SeqpacketServer(const SeqpacketServer&) = delete;
  SeqpacketServer& operator=(const SeqpacketServer&) = delete;

  // Listens on `path` with file mode `mode` and starts the loop thread.
  Status start(const std::string& path, unsigned mode);
  void stop();
  bool running() const { return running_.load(); }

  static constexpr std::size_t kMaxConnections = 256;
  static constexpr std::chrono::seconds kIdleTimeout{30};

 private:
  void loop();
  bool serveOne(int fd, const PeerCred& cred);  // false: close the connection

  std::string name_;
  std::string path_;
  Metrics& metrics_;
  RequestHandler handler_;
  UniqueFd listener_;
  UniqueFd wake_;
  std::thread thread_;
  std::atomic<bool> running_{false};
};

}  // namespace colo::node
