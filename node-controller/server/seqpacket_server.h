// A SOCK_SEQPACKET server speaking the colo wire protocol on one thread, over any number of
// listeners. Each listener carries a tag (the CNI socket, or a pod's key), and every connection
// remembers the tag of the listener that accepted it: that, never anything the client says, is
// who the caller is. Every failure becomes an error reply or a closed connection, never a crash.
//
// The loop never blocks (docs/architecture.md, "Threads and ownership"): sockets are
// non-blocking; replies wait in a bounded queue per connection (a peer that does not read is cut
// off); each tag (pod) has caps on connections, pending requests and queued reply bytes; slow work
// goes to a bounded worker pool and connects are waited for by the loop's own poll; listeners are
// handed over through a queue, never waited for; EMFILE is survived with a reserve descriptor.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "colo/common/error.h"
#include "colo/common/unique_fd.h"
#include "colo/common/wire.h"
#include "metrics.h"
#include "server/worker_pool.h"

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
  int pidfd = -1;        // SO_PEERPIDFD (the connecting process itself) during the AcceptCheck only, else -1
                         // (closed once admission is decided: a held connection costs one descriptor)
};

// A reply, and descriptors to pass with it (SCM_RIGHTS). A handler that has slow work returns a
// Reply with `deferred` (run on the worker pool; its result is the reply) or `wait` (the loop polls
// the descriptor until it is ready or the deadline passes, then calls `done`). Either way the
// connection reads nothing more until the final reply is queued.
struct Reply {
  using Clock = std::chrono::steady_clock;
  struct Wait {
    UniqueFd fd;
    short events = 0;
    Clock::time_point deadline;
    std::function<Reply(UniqueFd fd, short revents)> done;  // revents 0: the deadline passed
  };
  Reply(nlohmann::json b) : body(std::move(b)) {}  // NOLINT: implicit, most replies carry no fds
  Reply(nlohmann::json b, std::vector<UniqueFd> f) : body(std::move(b)), fds(std::move(f)) {}
  static Reply later(std::function<Reply()> work) {
    Reply r(nullptr);
    r.deferred = std::move(work);
    return r;
  }
  static Reply whenReady(Wait w) {
    Reply r(nullptr);
    r.wait = std::make_unique<Wait>(std::move(w));
    return r;
  }
  nlohmann::json body;
  std::vector<UniqueFd> fds;
  std::function<Reply()> deferred;
  std::unique_ptr<Wait> wait;
  bool keepOpen = false;  // the connection waits quietly from now on (a listener): no idle timeout
};

using RequestHandler = std::function<Reply(wire::Message&, const ConnInfo&)>;
// Called once per accepted connection; returning an error refuses it: its first request is
// answered with that error and it is closed (at once, it could lose the reply: a Unix socket
// closed with unread data resets its peer). Refused connections linger at most `refusedLinger`.
using AcceptCheck = std::function<Status(const ConnInfo&)>;
// Called on the loop thread when a connection goes, for whatever reason.
using CloseHook = std::function<void(const ConnInfo&)>;

struct ServerLimits {
  std::size_t maxConnections = 8192;                       // whole server
  std::size_t maxConnectionsPerTag = 64;                   // per pod (per listener tag)
  std::size_t maxPendingPerTag = 16;                       // requests of a tag on the worker pool or waiting
  std::size_t maxQueuedReplies = 32;                       // per connection; a peer that does not read is cut off
  std::size_t maxQueuedBytesPerTag = 1 << 20;              // reply bytes a tag's unread connections may hold
  std::size_t maxRefusedLingering = 64;                    // refused connections kept to answer once
  std::chrono::milliseconds refusedLinger{1000};
  std::chrono::milliseconds idleTimeout{300000};           // 0: never
  // Descriptors this server leaves free for the rest of the process (the CNI path): with fewer
  // than this many left under RLIMIT_NOFILE, a new connection is closed at once and a new slow
  // request (it opens sockets, memfds) answered resource_exhausted. 0: no budget.
  std::size_t fdReserve = 0;
  std::size_t workers = 0, workerQueue = 256, workerShare = 2;  // no pool when workers == 0
};

class SeqpacketServer {
 public:
  SeqpacketServer(std::string name, Metrics& metrics, RequestHandler handler, AcceptCheck check = nullptr,
                  CloseHook onClose = nullptr, ServerLimits limits = {});
  ~SeqpacketServer();
  SeqpacketServer(const SeqpacketServer&) = delete;
  SeqpacketServer& operator=(const SeqpacketServer&) = delete;

  Status start();
  void stop();
  bool running() const { return running_.load(); }
  // Time since the loop last went round (it does at least every 500 ms when healthy).
  std::chrono::milliseconds sinceHeartbeat() const;

  // Listens on `path` (file mode `mode`) under `tag`.
  Status listen(const std::string& path, unsigned mode, const std::string& tag);
  // Serves an already listening socket under `tag`. Never waits for the loop: listeners live in
  // an epoll set that the loop polls, so adding one takes a short lock, not a round of the loop.
  void addListener(UniqueFd fd, const std::string& tag, const std::string& address);
  // Closes every listener with `tag` before it returns (the address is free again: a pod re-added
  // in the same netns binds @colo at once), and has the loop close their connections next round.
  void removeListeners(const std::string& tag);
  std::size_t listenerCount() const;
  // On the loop thread only (from a handler): queues an unsolicited message (an event) on
  // connection `connId` under the same bounds as its replies; a connection whose queue is full is
  // cut off (closed by the loop after this round; the caller may hold a reference into it).
  // Errors: not_found (no such connection), unavailable (cut off, or its peer went away).
  Status post(std::uint64_t connId, Reply message);
  const ServerLimits& limits() const { return limits_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Listener {
    UniqueFd fd;
    std::string tag, address;
  };
  struct Outbound {
    std::string data;
    std::vector<UniqueFd> fds;
  };
  struct Conn {
    UniqueFd fd;
    ConnInfo info;
    Clock::time_point last;
    std::optional<Error> refused;
    Clock::time_point refusedUntil;
    std::deque<Outbound> out;
    std::size_t outBytes = 0;
    bool busy = false, keepOpen = false, closeWhenFlushed = false, dead = false;
    const char* cutReason = nullptr;  // cut off by post(): closed at the end of the round
  };
  struct PendingWait {
    std::uint64_t connId;
    std::string tag;
    Reply::Wait w;
  };
  struct Completion {
    std::uint64_t connId;
    std::string tag;
    Reply reply;
  };
  struct TagUse {
    std::size_t conns = 0, pending = 0, outBytes = 0;
  };

  void loop();
  void applyCommands();
  void wake();
  void acceptReady(Clock::time_point now);
  // fdsFree: descriptors the process may still open (counted once per round, decremented here).
  void admitOne(UniqueFd c, const std::string& tag, const std::string& address, Clock::time_point now, std::size_t& fdsFree);
  void readFrom(Conn& conn, Clock::time_point now);
  Reply handle(wire::Message& msg, Conn& conn);
  // The result of a request (from the handler, a worker or a wait) for connection `connId`.
  // `request` (the request being answered, for the id of an error reply) when it is at hand.
  void deliver(std::uint64_t connId, const std::string& tag, Reply reply, bool wasPending, const nlohmann::json& request = nullptr);
  void enqueue(Conn& conn, Reply reply);
  // Queues `o` on `conn` within the bounds; false when it cut `conn` off instead: closed at once,
  // or with `later` marked (cutReason) and closed by the loop at the end of the round.
  bool queue(Conn& conn, Outbound o, bool later);
  static Outbound encode(Reply& reply);
  void flush(Conn& conn);
  void close(std::uint64_t connId, const char* why);
  void exhausted(const char* cap);

  std::string name_;
  Metrics& metrics_;
  RequestHandler handler_;
  AcceptCheck check_;
  CloseHook onClose_;
  ServerLimits limits_;
  std::unique_ptr<WorkerPool> pool_;
  std::uint64_t nextConnId_ = 1;
  UniqueFd wake_, reserve_, listenEp_;
  std::thread thread_;
  std::atomic<bool> running_{false};
  std::atomic<std::int64_t> heartbeat_{0};

  // Loop thread only.
  std::map<std::uint64_t, Conn> conns_;
  std::map<std::string, TagUse> use_;
  std::vector<PendingWait> waits_;
  std::vector<std::uint64_t> cut_;  // connections post() cut off, closed at the end of the round
  std::size_t refusedLingering_ = 0;
  Clock::time_point acceptPausedUntil_{}, lastAcceptLog_{}, lastSweep_{};

  // Shared with other threads under mu_ (held only for short non-blocking work, never while
  // waiting): the listeners, tags whose connections are to go, worker results.
  mutable std::mutex mu_;
  std::map<std::uint64_t, Listener> listeners_;
  std::uint64_t nextListenerId_ = 1;
  std::vector<std::string> removed_;
  std::vector<Completion> completions_;
};

}  // namespace colo::node
