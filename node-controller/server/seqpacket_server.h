// A SOCK_SEQPACKET server speaking the colo wire protocol on one thread, over any number of
// listeners. Each listener carries a tag (the CNI socket, or a pod's key), and every connection
// remembers the tag of the listener that accepted it: that, never anything the client says, is
// who the caller is. Every failure becomes an error reply or a closed connection, never a crash.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

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

struct ConnInfo {
  std::string tag;       // the accepting listener's tag
  std::string listener;  // its address, for logs and checks ("@colo", a path)
  PeerCred cred;         // SO_PEERCRED at accept
  std::uint64_t id = 0;  // unique per connection for the server's life
  int fd = -1;           // the connection; valid until onClose. Owned by the server.
};

// A reply, and descriptors to pass with it (SCM_RIGHTS).
struct Reply {
  Reply(nlohmann::json b) : body(std::move(b)) {}  // NOLINT: implicit, most replies carry no fds
  Reply(nlohmann::json b, std::vector<UniqueFd> f) : body(std::move(b)), fds(std::move(f)) {}
  nlohmann::json body;
  std::vector<UniqueFd> fds;
};

using RequestHandler = std::function<Reply(wire::Message&, const ConnInfo&)>;
// Called once per accepted connection; returning an error refuses it: every request on it is then
// answered with that error (closing at once could lose the reply: a Unix socket closed with unread
// data resets its peer).
using AcceptCheck = std::function<Status(const ConnInfo&)>;
// Called on the loop thread when a connection goes, for whatever reason.
using CloseHook = std::function<void(const ConnInfo&)>;

class SeqpacketServer {
 public:
  SeqpacketServer(std::string name, Metrics& metrics, RequestHandler handler, AcceptCheck check = nullptr,
                  CloseHook onClose = nullptr);
  ~SeqpacketServer();
  SeqpacketServer(const SeqpacketServer&) = delete;
  SeqpacketServer& operator=(const SeqpacketServer&) = delete;

  Status start();
  void stop();
  bool running() const { return running_.load(); }

  // Listens on `path` (file mode `mode`) under `tag`.
  Status listen(const std::string& path, unsigned mode, const std::string& tag);
  // Serves an already listening socket under `tag`. Returns once the loop has it.
  void addListener(UniqueFd fd, const std::string& tag, const std::string& address);
  // Closes every listener and connection with `tag`. Returns once they are closed.
  void removeListeners(const std::string& tag);
  std::size_t listenerCount() const;

  static constexpr std::size_t kMaxConnections = 4096;
  // Connections idle longer are closed; 0 keeps them (pod endpoints: a listener waits quietly).
  void setIdleTimeout(std::chrono::seconds t) { idleTimeout_ = t; }

 private:
  struct Listener {
    UniqueFd fd;
    std::string tag, address;
  };
  struct Conn {
    UniqueFd fd;
    ConnInfo info;
    std::chrono::steady_clock::time_point last;
    std::optional<Error> refused;
  };
  struct Command {
    enum class Kind { Add, Remove } kind;
    Listener listener;
    std::string tag;
  };

  void loop();
  void applyCommands();
  void wake();
  bool serveOne(Conn& conn);

  std::string name_;
  Metrics& metrics_;
  RequestHandler handler_;
  AcceptCheck check_;
  CloseHook onClose_;
  std::uint64_t nextConnId_ = 1;
  std::chrono::seconds idleTimeout_{300};
  UniqueFd wake_;
  std::thread thread_;
  std::atomic<bool> running_{false};

  std::vector<Listener> listeners_;  // loop thread only
  std::vector<Conn> conns_;          // loop thread only
  mutable std::mutex mu_;
  std::condition_variable applied_;
  std::vector<Command> pending_;
  std::uint64_t submitted_ = 0, done_ = 0;
  std::size_t listenerCount_ = 0;
};

}  // namespace colo::node
