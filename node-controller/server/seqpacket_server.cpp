#include "server/seqpacket_server.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "log/log_limiter.h"
#include "server/fd_budget.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5; older headers lack it
#endif

namespace colo::node {

using proto::ErrorCode;

namespace {
constexpr std::size_t kReadsPerRound = 8;     // per connection, so one busy peer cannot hog a round
constexpr std::size_t kAcceptsPerRound = 64;  // per listener
constexpr auto kTick = std::chrono::milliseconds(500);

std::int64_t nowNs() { return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

SeqpacketServer::SeqpacketServer(std::string name, Metrics& metrics, RequestHandler handler, AcceptCheck check, CloseHook onClose,
                                 ServerLimits limits)
    : name_(std::move(name)), metrics_(metrics), handler_(std::move(handler)), check_(std::move(check)), onClose_(std::move(onClose)),
      limits_(limits) {
  metrics_.describe("colo_wire_errors_total", "counter", "Malformed or refused wire protocol messages, by socket and reason.");
  metrics_.describe("colo_wire_connections_rejected_total", "counter",
                    "Connections refused at accept, by socket and reason (admission, per_pod_cap, server_cap, refused_backlog).");
  metrics_.describe("colo_wire_connections", "gauge", "Open connections, by socket.");
  metrics_.describe("colo_wire_peers_cut_total", "counter",
                    "Connections closed by the server, by socket and reason (slow_reader: replies not read; idle; memory: the pod's reply bytes).");
  metrics_.describe("colo_wire_accept_errors_total", "counter", "accept() failures, by socket and reason (emfile, enfile, other).");
  metrics_.describe("colo_wire_resource_exhausted_total", "counter", "Requests answered resource_exhausted, by socket and cap.");
  metrics_.set("colo_wire_connections", {{"socket", name_}}, 0);
  metrics_.add("colo_wire_peers_cut_total", {{"socket", name_}, {"reason", "slow_reader"}}, 0);
  metrics_.add("colo_wire_accept_errors_total", {{"socket", name_}, {"reason", "emfile"}}, 0);
}

SeqpacketServer::~SeqpacketServer() { stop(); }

Status SeqpacketServer::start() {
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) return Error::fromErrno("eventfd");
  listenEp_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!listenEp_) return Error::fromErrno("epoll_create1");
  // Kept for the day the process runs out of descriptors: closed to accept and drop a connection,
  // so that a full backlog drains instead of waking the loop forever.
  reserve_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (limits_.workers > 0) pool_ = std::make_unique<WorkerPool>(limits_.workers, limits_.workerQueue, limits_.workerShare);
  heartbeat_ = nowNs();
  running_ = true;
  thread_ = std::thread([this] { loop(); });
  return {};
}

void SeqpacketServer::stop() {
  if (!running_.exchange(false)) return;
  wake();
  if (thread_.joinable()) thread_.join();
  if (pool_) pool_->stop();  // workers never wait open-ended: this returns promptly
  waits_.clear();
  conns_.clear();
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, l] : listeners_) {
      if (!l.address.empty() && l.address[0] == '/') ::unlink(l.address.c_str());
    }
    listeners_.clear();
    removed_.clear();
    completions_.clear();
  }
  spdlog::info("{}: stopped", name_);
}

std::chrono::milliseconds SeqpacketServer::sinceHeartbeat() const {
  if (!running_) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds((nowNs() - heartbeat_.load()) / 1000000);
}

void SeqpacketServer::wake() {
  const std::uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

Status SeqpacketServer::listen(const std::string& path, unsigned mode, const std::string& tag) {
  auto l = wire::listenUnix(path, mode);
  if (!l) return l.error();
  addListener(std::move(l.value()), tag, path);
  spdlog::info("{}: serving the colo wire protocol v{} on {}", name_, wire::kVersion, path);
  return {};
}

void SeqpacketServer::addListener(UniqueFd fd, const std::string& tag, const std::string& address) {
  std::lock_guard lock(mu_);
  const std::uint64_t id = nextListenerId_++;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = id;
  if (::epoll_ctl(listenEp_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
    spdlog::error("{}: {}", name_, Error::fromErrno("epoll_ctl(add " + address + ")").message);
    return;
  }
  listeners_.emplace(id, Listener{std::move(fd), tag, address});
}

void SeqpacketServer::removeListeners(const std::string& tag) {
  {
    std::lock_guard lock(mu_);
    std::erase_if(listeners_, [&](const auto& kv) {
      const Listener& l = kv.second;
      if (l.tag != tag) return false;
      if (!l.address.empty() && l.address[0] == '/') ::unlink(l.address.c_str());
      return true;  // closing the descriptor takes it out of the epoll set too
    });
    removed_.push_back(tag);
  }
  wake();
}

std::size_t SeqpacketServer::listenerCount() const {
  std::lock_guard lock(mu_);
  return listeners_.size();
}

void SeqpacketServer::applyCommands() {
  std::vector<std::string> tags;
  {
    std::lock_guard lock(mu_);
    tags.swap(removed_);
  }
  for (const auto& tag : tags) {
    std::vector<std::uint64_t> gone;
    for (const auto& [id, conn] : conns_) {
      if (conn.info.tag == tag) gone.push_back(id);
    }
    for (auto id : gone) close(id, nullptr);
  }
}

void SeqpacketServer::exhausted(const char* cap) { metrics_.add("colo_wire_resource_exhausted_total", {{"socket", name_}, {"cap", cap}}); }

void SeqpacketServer::close(std::uint64_t connId, const char* why) {
  auto it = conns_.find(connId);
  if (it == conns_.end()) return;
  Conn& conn = it->second;
  if (why) metrics_.add("colo_wire_peers_cut_total", {{"socket", name_}, {"reason", why}});
  auto& use = use_[conn.info.tag];
  if (!conn.refused) --use.conns;
  else --refusedLingering_;
  use.outBytes -= conn.outBytes;
  // A wait of this connection ends with it (its socket is closed, nothing is sent).
  for (auto w = waits_.begin(); w != waits_.end();) {
    if (w->connId == connId) {
      --use.pending;
      w = waits_.erase(w);
    } else {
      ++w;
    }
  }
  if (use.conns == 0 && use.pending == 0 && use.outBytes == 0) use_.erase(conn.info.tag);
  if (!conn.refused && onClose_) onClose_(conn.info);
  conns_.erase(it);
  metrics_.set("colo_wire_connections", {{"socket", name_}}, static_cast<double>(conns_.size()));
}

Reply SeqpacketServer::handle(wire::Message& msg, Conn& conn) {
  if (conn.refused) {
    conn.closeWhenFlushed = true;
    return proto::errorReply(msg.body, proto::codeOf(*conn.refused), conn.refused->message);
  }
  if (auto v = wire::validateRequest(msg.body); !v) {
    metrics_.add("colo_wire_errors_total", {{"socket", name_}, {"reason", v.error().code}});
    return proto::errorReply(msg.body, proto::codeOf(v.error()), v.error().message);
  }
  try {
    return handler_(msg, conn.info);
  } catch (const nlohmann::json::exception&) {
    // A field of the wrong type reached a handler: the caller's mistake, not ours.
    metrics_.add("colo_wire_errors_total", {{"socket", name_}, {"reason", std::string(proto::name(ErrorCode::BadRequest))}});
    return proto::errorReply(msg.body, ErrorCode::BadRequest, "a field of the request has the wrong type");
  } catch (const std::exception& ex) {
    spdlog::error("{}: handler failed on op {}: {}", name_, msg.body.value("op", std::string("?")), ex.what());
    return proto::errorReply(msg.body, ErrorCode::Internal, "internal error (see colo-node's log)");
  }
}

void SeqpacketServer::readFrom(Conn& conn, Clock::time_point now) {
  const std::uint64_t id = conn.info.id;
  for (std::size_t i = 0; i < kReadsPerRound && !conn.busy && !conn.dead && !conn.closeWhenFlushed; ++i) {
    auto msg = wire::recv(conn.fd.get());
    if (!msg) {
      const auto& e = msg.error();
      if (e.errnum == EAGAIN || e.errnum == EWOULDBLOCK) return;
      if (e.code == "closed" || e.code == "io" || e.code == "not_found") {
        conn.dead = true;
        return;
      }
      metrics_.add("colo_wire_errors_total", {{"socket", name_}, {"reason", e.code}});
      spdlog::debug("{}: bad message from pid {} on {}: {}", name_, conn.info.cred.pid, conn.info.listener, e.message);
      enqueue(conn, proto::errorReply(nullptr, proto::codeOf(e), e.message));
      if (!conns_.count(id)) return;
      continue;
    }
    conn.last = now;
    Reply r = handle(*msg, conn);
    deliver(id, conn.info.tag, std::move(r), false, msg->body);
    if (!conns_.count(id)) return;  // cut off while queueing
  }
}

void SeqpacketServer::deliver(std::uint64_t connId, const std::string& tag, Reply reply, bool wasPending, const nlohmann::json& request) {
  auto it = conns_.find(connId);
  auto& use = use_[tag];
  const bool slow = reply.deferred || reply.wait;
  if (slow && !wasPending) {
    // A new slow request: the tag's pending cap, then the pool's share.
    if (it == conns_.end()) return;
    if (use.pending >= limits_.maxPendingPerTag) {
      exhausted("pending");
      enqueue(it->second, proto::errorReply(request, ErrorCode::ResourceExhausted, "this pod has " + std::to_string(use.pending) +
                                                                                 " requests in progress (the cap); try again when they finish"));
      return;
    }
    if (limits_.fdReserve > 0 && freeDescriptors() <= limits_.fdReserve) {
      exhausted("descriptors");
      enqueue(it->second, proto::errorReply(request, ErrorCode::ResourceExhausted,
                                           "colo-node is short of descriptors (what is left is kept for pod creation); try again later"));
      return;
    }
    ++use.pending;
    it->second.busy = true;
    wasPending = true;
  }
  if (reply.deferred) {
    if (it == conns_.end()) {
      --use.pending;
      return;
    }
    auto work = std::move(reply.deferred);
    const bool queued = pool_ && pool_->submit(tag, [this, connId, tag, work = std::move(work)] {
      Reply r = work();
      {
        std::lock_guard lock(mu_);
        completions_.push_back(Completion{connId, tag, std::move(r)});
      }
      wake();
    });
    if (queued) return;
    --use.pending;
    it->second.busy = false;
    exhausted("workers");
    enqueue(it->second, proto::errorReply(request, ErrorCode::ResourceExhausted,
                                         "this pod's share of colo-node's workers is in use; try again when its requests finish"));
    return;
  }
  if (reply.wait) {
    if (it == conns_.end()) {
      --use.pending;
      return;
    }
    waits_.push_back(PendingWait{connId, tag, std::move(*reply.wait)});
    return;
  }
  if (wasPending) --use.pending;
  if (it == conns_.end()) return;  // gone meanwhile: descriptors close with the reply
  it->second.busy = false;
  if (reply.keepOpen) it->second.keepOpen = true;
  enqueue(it->second, std::move(reply));
}

SeqpacketServer::Outbound SeqpacketServer::encode(Reply& reply) {
  Outbound o;
  o.data = reply.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (o.data.size() > wire::kMaxMessage) {
    o.data = proto::errorReply(reply.body, ErrorCode::Internal, "reply exceeds 64 KiB").dump();
  } else {
    o.fds = std::move(reply.fds);
  }
  return o;
}

void SeqpacketServer::enqueue(Conn& conn, Reply reply) { (void)queue(conn, encode(reply), /*later=*/false); }

bool SeqpacketServer::queue(Conn& conn, Outbound o, bool later) {
  auto& use = use_[conn.info.tag];
  const char* cut = nullptr;
  if (conn.out.size() >= limits_.maxQueuedReplies) {
    spdlog::warn("{}: pid {} on {} does not read what it is sent ({} queued); cut off", name_, conn.info.cred.pid, conn.info.listener, conn.out.size());
    cut = "slow_reader";
  } else if (use.outBytes + o.data.size() > limits_.maxQueuedBytesPerTag) {
    spdlog::warn("{}: pod {}'s unread messages hold {} bytes (the cap); cut off pid {}", name_, conn.info.tag, use.outBytes, conn.info.cred.pid);
    cut = "memory";
  }
  if (cut) {
    if (!later) {
      close(conn.info.id, cut);
    } else if (!conn.cutReason) {
      conn.cutReason = cut;
      conn.dead = true;
      cut_.push_back(conn.info.id);
    }
    return false;
  }
  use.outBytes += o.data.size();
  conn.outBytes += o.data.size();
  conn.out.push_back(std::move(o));
  flush(conn);
  return true;
}

Status SeqpacketServer::post(std::uint64_t connId, Reply message) {
  auto it = conns_.find(connId);
  if (it == conns_.end()) return proto::error(ErrorCode::NotFound, "no such connection");
  Conn& conn = it->second;
  if (conn.dead || conn.refused) return proto::error(ErrorCode::Unavailable, conn.cutReason ? "cut off: it does not read what it is sent" : "it went away");
  if (!queue(conn, encode(message), /*later=*/true)) return proto::error(ErrorCode::Unavailable, "cut off: it does not read what it is sent");
  if (conn.dead) {
    cut_.push_back(connId);  // the send failed: closed at the end of the round like a cut
    return proto::error(ErrorCode::Unavailable, "it went away");
  }
  return {};
}

void SeqpacketServer::flush(Conn& conn) {
  auto& use = use_[conn.info.tag];
  while (!conn.out.empty()) {
    auto& o = conn.out.front();
    std::vector<int> fds;
    for (const auto& f : o.fds) fds.push_back(f.get());
    auto s = wire::sendRaw(conn.fd.get(), o.data.data(), o.data.size(), fds, MSG_DONTWAIT);
    if (!s) {
      if (s.error().errnum == EAGAIN || s.error().errnum == EWOULDBLOCK) return;  // POLLOUT will tell
      spdlog::debug("{}: reply to pid {} not delivered: {}", name_, conn.info.cred.pid, s.error().message);
      conn.dead = true;
      return;
    }
    use.outBytes -= o.data.size();
    conn.outBytes -= o.data.size();
    conn.out.pop_front();
  }
  if (conn.closeWhenFlushed) conn.dead = true;
}

// Accepts under the lock (non-blocking calls only, so that removeListeners never finds a
// listener half-used), then admits outside it.
void SeqpacketServer::acceptReady(Clock::time_point now) {
  struct Accepted {
    UniqueFd fd;
    std::string tag, address;
  };
  std::vector<Accepted> accepted;
  std::size_t fdsFree = limits_.fdReserve > 0 ? freeDescriptors() : static_cast<std::size_t>(-1);
  {
    epoll_event evs[64];
    const int n = ::epoll_wait(listenEp_.get(), evs, 64, 0);
    std::lock_guard lock(mu_);
    for (int i = 0; i < n; ++i) {
      // epoll_event is packed on x86-64: copy the id out rather than bind a reference to it
      // (misaligned; UBSan in the handler fuzzer found it).
      const std::uint64_t listenerId = evs[i].data.u64;
      auto it = listeners_.find(listenerId);
      if (it == listeners_.end()) continue;  // removed meanwhile
      const Listener& l = it->second;
      for (std::size_t k = 0; k < kAcceptsPerRound; ++k) {
        UniqueFd c(::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (c) {
          accepted.push_back(Accepted{std::move(c), l.tag, l.address});
          continue;
        }
        const int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED) break;
        const char* reason = err == EMFILE ? "emfile" : err == ENFILE ? "enfile" : "other";
        metrics_.add("colo_wire_accept_errors_total", {{"socket", name_}, {"reason", reason}});
        if (now - lastAcceptLog_ > std::chrono::seconds(10)) {
          lastAcceptLog_ = now;
          spdlog::error("{}: {}; dropping connections until descriptors are free (see colo_wire_accept_errors_total)", name_,
                        Error::fromErrno("accept(" + l.address + ")", err).message);
        }
        if ((err == EMFILE || err == ENFILE) && reserve_) {
          // Take the pending connection with the reserve and close it: the backlog drains, no spin.
          reserve_.reset();
          UniqueFd drop(::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
          const bool dropped = static_cast<bool>(drop);
          drop.reset();
          reserve_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
          if (dropped && reserve_) continue;
        }
        acceptPausedUntil_ = now + std::chrono::milliseconds(100);  // back off instead of spinning
        break;
      }
    }
  }
  for (auto& a : accepted) admitOne(std::move(a.fd), a.tag, a.address, now, fdsFree);
}

// Cheapest refusals first: caps and the descriptor budget cost nothing; only then is the caller
// looked at (a pidfd and its namespace), and the pidfd is closed as soon as that is decided.
void SeqpacketServer::admitOne(UniqueFd c, const std::string& tag, const std::string& address, Clock::time_point now, std::size_t& fdsFree) {
  // The accepted socket is already counted in fdsFree (counted before accepting): this is what
  // holding it leaves.
  fdsFree = fdsFree > 0 ? fdsFree - 1 : 0;
  ucred uc{};
  socklen_t len = sizeof(uc);
  ::getsockopt(c.get(), SOL_SOCKET, SO_PEERCRED, &uc, &len);
  Conn conn;
  conn.info = ConnInfo{tag, address, PeerCred{uc.pid, uc.uid, uc.gid}, nextConnId_++, c.get(), -1};
  conn.last = now;
  auto& use = use_[tag];
  const char* rejected = nullptr;
  std::optional<Error> refused;
  const bool shortOfFds = limits_.fdReserve > 0 && fdsFree <= limits_.fdReserve;
  if (shortOfFds) {
    // Closed at once, never kept to answer: what is left is the CNI path's.
    metrics_.add("colo_wire_connections_rejected_total", {{"socket", name_}, {"reason", "fd_budget"}});
    if (warnLimiter().allow(name_ + ": connections closed at once, colo-node is short of descriptors")) {
      spdlog::warn("{}: closed pid {} uid {} on {} at once: {} descriptors left under RLIMIT_NOFILE, {} kept for pod creation", name_, uc.pid,
                   uc.uid, address, fdsFree, limits_.fdReserve);
    }
    fdsFree += 1;
    return;
  }
  if (conns_.size() >= limits_.maxConnections) {
    rejected = "server_cap";
    refused = proto::error(ErrorCode::ResourceExhausted, "colo-node serves " + std::to_string(conns_.size()) + " connections (its cap)");
  } else if (use.conns >= limits_.maxConnectionsPerTag) {
    rejected = "per_pod_cap";
    refused = proto::error(ErrorCode::ResourceExhausted, "this pod has " + std::to_string(use.conns) + " connections open (the cap)");
  } else if (check_) {
    int pidfd = -1;
    len = sizeof(pidfd);
    if (::getsockopt(c.get(), SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0) pidfd = -1;
    const UniqueFd held(pidfd);  // only for the check: admission is decided now
    conn.info.pidfd = pidfd;
    auto s = check_(conn.info);
    conn.info.pidfd = -1;
    if (!s) {
      rejected = "admission";
      refused = s.error();
      // Per cause and caller: a host user's connect flood costs a few lines, not megabytes.
      if (warnLimiter().allow(name_ + ": connections refused at admission, uid " + std::to_string(uc.uid) + " on " + address)) {
        spdlog::warn("{}: refused pid {} uid {} on {}: {}", name_, uc.pid, uc.uid, address, s.error().message);
      }
    }
  }
  if (refused) {
    if (refusedLingering_ >= limits_.maxRefusedLingering) rejected = "refused_backlog";
    metrics_.add("colo_wire_connections_rejected_total", {{"socket", name_}, {"reason", rejected}});
    if (std::string_view(rejected) == "refused_backlog") {
      fdsFree += 1;
      return;  // closed at once: too many refused already
    }
    ++refusedLingering_;
    conn.refused = std::move(refused);
    conn.refusedUntil = now + limits_.refusedLinger;
  } else {
    ++use.conns;
  }
  conn.fd = std::move(c);
  conns_.emplace(conn.info.id, std::move(conn));
}

void SeqpacketServer::loop() {
  // CNI requests and pods' calls are served here; like the watcher it gets nice -5 within
  // colo-node's cgroup (pods' own cgroups are not affected).
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), -5) != 0) {
    spdlog::debug("{}: thread priority unchanged: {}", name_, Error::fromErrno("setpriority").message);
  }
  std::vector<pollfd> fds;
  std::vector<std::uint64_t> connOf;  // fds index -> connection id
  while (running_) {
    heartbeat_ = nowNs();
    applyCommands();
    {
      std::vector<Completion> done;
      {
        std::lock_guard lock(mu_);
        done.swap(completions_);
      }
      for (auto& c : done) deliver(c.connId, c.tag, std::move(c.reply), true);
    }
    auto now = Clock::now();
    const bool acceptOn = now >= acceptPausedUntil_;
    fds.clear();
    connOf.clear();
    fds.push_back({wake_.get(), POLLIN, 0});
    const std::size_t listenerIdx = fds.size();
    fds.push_back({listenEp_.get(), static_cast<short>(acceptOn ? POLLIN : 0), 0});
    const std::size_t connBase = fds.size();
    for (auto& [id, conn] : conns_) {
      short ev = 0;
      if (!conn.busy && !conn.closeWhenFlushed) ev |= POLLIN;
      if (!conn.out.empty()) ev |= POLLOUT;
      fds.push_back({conn.fd.get(), ev, 0});
      connOf.push_back(id);
    }
    const std::size_t waitBase = fds.size();
    auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kTick);
    for (const auto& w : waits_) {
      fds.push_back({w.w.fd.get(), w.w.events, 0});
      timeout = std::min(timeout, std::chrono::duration_cast<std::chrono::milliseconds>(w.w.deadline - now) + std::chrono::milliseconds(1));
    }
    if (!acceptOn) timeout = std::min(timeout, std::chrono::duration_cast<std::chrono::milliseconds>(acceptPausedUntil_ - now) + std::chrono::milliseconds(1));
    const int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<long>(0, timeout.count())));
    if (n < 0 && errno != EINTR) {
      spdlog::error("{}: {}", name_, Error::fromErrno("poll").message);
      continue;
    }
    if (!running_) break;
    heartbeat_ = nowNs();
    if (fds[0].revents & POLLIN) {
      std::uint64_t v;
      (void)!::read(wake_.get(), &v, sizeof(v));
    }
    now = Clock::now();
    // Waits first (their entries move as they finish), then connections, then accepts.
    std::vector<PendingWait> ready;
    {
      std::size_t i = 0;
      for (auto w = waits_.begin(); w != waits_.end(); ++i) {
        const short rev = fds[waitBase + i].revents;
        if (rev != 0 || now >= w->w.deadline) {
          ready.push_back(std::move(*w));
          ready.back().w.events = rev;
          w = waits_.erase(w);
        } else {
          ++w;
        }
      }
    }
    for (auto& w : ready) {
      Reply r = w.w.done(std::move(w.w.fd), w.w.events);
      deliver(w.connId, w.tag, std::move(r), true);
    }
    for (std::size_t i = 0; i < connOf.size(); ++i) {
      const short rev = fds[connBase + i].revents;
      if (rev == 0) continue;
      auto it = conns_.find(connOf[i]);
      if (it == conns_.end()) continue;
      Conn& conn = it->second;
      if (rev & POLLOUT) flush(conn);
      if ((rev & POLLIN) && !conn.dead) readFrom(conn, now);
      if (!conns_.count(connOf[i])) continue;
      if ((rev & (POLLHUP | POLLERR | POLLNVAL)) && !(rev & POLLIN)) conn.dead = true;
      if (conn.dead) close(connOf[i], conn.cutReason);
    }
    // Connections post() cut off or found gone (never closed inside a handler: it may hold them).
    for (auto id : std::exchange(cut_, {})) {
      if (auto it = conns_.find(id); it != conns_.end()) close(id, it->second.cutReason);
    }
    if (acceptOn && (fds[listenerIdx].revents & POLLIN)) acceptReady(now);
    if (now - lastSweep_ >= kTick) {
      lastSweep_ = now;
      warnLimiter().sweep(now);  // the last window of a flood that stopped is summarised too
      std::vector<std::pair<std::uint64_t, const char*>> cut;
      for (const auto& [id, conn] : conns_) {
        if (conn.refused && now >= conn.refusedUntil) cut.emplace_back(id, nullptr);
        else if (limits_.idleTimeout.count() > 0 && !conn.keepOpen && !conn.busy && conn.out.empty() && now - conn.last > limits_.idleTimeout)
          cut.emplace_back(id, "idle");
      }
      for (const auto& [id, why] : cut) close(id, why);
    }
    metrics_.set("colo_wire_connections", {{"socket", name_}}, static_cast<double>(conns_.size()));
  }
}

}  // namespace colo::node
