#include "server/seqpacket_server.h"

#include <sys/resource.h>
#include <unistd.h>

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

namespace colo::node {

namespace code = wire::code;
using Clock = std::chrono::steady_clock;

SeqpacketServer::SeqpacketServer(std::string name, Metrics& metrics, RequestHandler handler, AcceptCheck check, CloseHook onClose)
    : name_(std::move(name)), metrics_(metrics), handler_(std::move(handler)), check_(std::move(check)), onClose_(std::move(onClose)) {
  metrics_.describe("colo_wire_errors_total", "counter", "Malformed or refused wire protocol messages, by socket and reason.");
  metrics_.describe("colo_wire_connections_rejected_total", "counter", "Connections refused at accept, by socket and reason.");
}

SeqpacketServer::~SeqpacketServer() { stop(); }

Status SeqpacketServer::start() {
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) return Error::fromErrno("eventfd");
  running_ = true;
  thread_ = std::thread([this] { loop(); });
  return {};
}

void SeqpacketServer::stop() {
  if (!running_.exchange(false)) return;
  wake();
  if (thread_.joinable()) thread_.join();
  for (const auto& l : listeners_) {
    if (!l.address.empty() && l.address[0] == '/') ::unlink(l.address.c_str());
  }
  listeners_.clear();
  conns_.clear();
  {
    std::lock_guard lock(mu_);
    done_ = submitted_;  // nobody waits forever on a stopped loop
    listenerCount_ = 0;
  }
  applied_.notify_all();
  spdlog::info("{}: stopped", name_);
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
  std::unique_lock lock(mu_);
  pending_.push_back(Command{Command::Kind::Add, Listener{std::move(fd), tag, address}, tag});
  const auto ticket = ++submitted_;
  lock.unlock();
  wake();
  lock.lock();
  applied_.wait(lock, [&] { return done_ >= ticket || !running_; });
}

void SeqpacketServer::removeListeners(const std::string& tag) {
  std::unique_lock lock(mu_);
  pending_.push_back(Command{Command::Kind::Remove, Listener{}, tag});
  const auto ticket = ++submitted_;
  lock.unlock();
  wake();
  lock.lock();
  applied_.wait(lock, [&] { return done_ >= ticket || !running_; });
}

std::size_t SeqpacketServer::listenerCount() const {
  std::lock_guard lock(mu_);
  return listenerCount_;
}

void SeqpacketServer::applyCommands() {
  std::vector<Command> cmds;
  std::uint64_t upTo;
  {
    std::lock_guard lock(mu_);
    cmds.swap(pending_);
    upTo = submitted_;
  }
  for (auto& c : cmds) {
    if (c.kind == Command::Kind::Add) {
      listeners_.push_back(std::move(c.listener));
    } else {
      std::erase_if(listeners_, [&](const Listener& l) {
        if (l.tag != c.tag) return false;
        if (!l.address.empty() && l.address[0] == '/') ::unlink(l.address.c_str());
        return true;
      });
      std::erase_if(conns_, [&](const Conn& conn) {
        if (conn.info.tag != c.tag) return false;
        if (onClose_) onClose_(conn.info);
        return true;
      });
    }
  }
  {
    std::lock_guard lock(mu_);
    done_ = std::max(done_, upTo);
    listenerCount_ = listeners_.size();
  }
  applied_.notify_all();
}

bool SeqpacketServer::serveOne(Conn& conn) {
  const int fd = conn.fd.get();
  auto msg = wire::recv(fd);
  if (!msg) {
    const auto& e = msg.error();
    if (e.code == "closed") return false;
    metrics_.add("colo_wire_errors_total", {{"socket", name_}, {"reason", e.code}});
    spdlog::warn("{}: bad message from pid {} on {}: {}", name_, conn.info.cred.pid, conn.info.listener, e.message);
    if (e.code == code::kTooLarge || e.code == code::kBadRequest) {
      return static_cast<bool>(wire::send(fd, wire::errorReply(nullptr, e.code, e.message)));
    }
    return false;
  }
  Reply reply(nullptr);
  if (conn.refused) {
    reply = wire::errorReply(msg->body, conn.refused->code, conn.refused->message);
  } else if (auto v = wire::validateRequest(msg->body); !v) {
    metrics_.add("colo_wire_errors_total", {{"socket", name_}, {"reason", v.error().code}});
    reply = wire::errorReply(msg->body, v.error().code, v.error().message);
  } else {
    try {
      reply = handler_(*msg, conn.info);
    } catch (const std::exception& ex) {
      reply = wire::errorReply(msg->body, code::kInternal, ex.what());
    }
  }
  std::vector<int> fds;
  for (const auto& f : reply.fds) fds.push_back(f.get());
  if (auto s = wire::send(fd, reply.body, fds); !s) {
    spdlog::debug("{}: reply to pid {} not delivered: {}", name_, conn.info.cred.pid, s.error().message);
    return false;
  }
  return true;
}

void SeqpacketServer::loop() {
  // CNI requests, pods' calls and listener hand-overs wait on this thread; like the watcher it
  // gets nice -5 within colo-node's cgroup (pods' own cgroups are not affected).
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), -5) != 0) {
    spdlog::debug("{}: thread priority unchanged: {}", name_, Error::fromErrno("setpriority").message);
  }
  std::vector<pollfd> fds;
  while (running_) {
    applyCommands();
    fds.clear();
    fds.push_back({wake_.get(), POLLIN, 0});
    for (const auto& l : listeners_) fds.push_back({l.fd.get(), POLLIN, 0});
    for (const auto& c : conns_) fds.push_back({c.fd.get(), POLLIN, 0});
    const int n = ::poll(fds.data(), fds.size(), 1000);
    if (n < 0 && errno != EINTR) {
      spdlog::error("{}: {}", name_, Error::fromErrno("poll").message);
      continue;
    }
    if (!running_) break;
    if (fds[0].revents & POLLIN) {
      std::uint64_t v;
      (void)!::read(wake_.get(), &v, sizeof(v));
    }
    const auto now = Clock::now();
    const std::size_t nListeners = listeners_.size(), nConns = conns_.size();
    // Connections first (indices stay valid), then accepts, which append.
    std::vector<bool> drop(nConns, false);
    for (std::size_t i = 0; i < nConns; ++i) {
      const auto rev = fds[1 + nListeners + i].revents;
      if (rev == 0) continue;
      if ((rev & POLLIN) && serveOne(conns_[i])) conns_[i].last = now;
      else drop[i] = true;
    }
    for (std::size_t i = nConns; i-- > 0;) {
      if (drop[i] || (idleTimeout_.count() > 0 && now - conns_[i].last > idleTimeout_)) {
        if (onClose_) onClose_(conns_[i].info);
        conns_.erase(conns_.begin() + static_cast<long>(i));
      }
    }
    for (std::size_t i = 0; i < nListeners; ++i) {
      if (!(fds[1 + i].revents & POLLIN)) continue;
      const Listener& l = listeners_[i];
      UniqueFd c(::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) continue;
      ucred uc{};
      socklen_t len = sizeof(uc);
      ::getsockopt(c.get(), SOL_SOCKET, SO_PEERCRED, &uc, &len);
      ConnInfo info{l.tag, l.address, PeerCred{uc.pid, uc.uid, uc.gid}, nextConnId_++, c.get()};
      if (conns_.size() >= kMaxConnections) {
        metrics_.add("colo_wire_connections_rejected_total", {{"socket", name_}, {"reason", "too_many"}});
        spdlog::warn("{}: {} connections open; refusing another", name_, conns_.size());
        continue;
      }
      std::optional<Error> refused;
      if (check_) {
        if (auto s = check_(info); !s) {
          metrics_.add("colo_wire_connections_rejected_total", {{"socket", name_}, {"reason", s.error().code}});
          spdlog::warn("{}: refused pid {} uid {} on {}: {}", name_, info.cred.pid, info.cred.uid, l.address, s.error().message);
          refused = s.error();
        }
      }
      conns_.push_back(Conn{std::move(c), std::move(info), now, std::move(refused)});
    }
  }
}

}  // namespace colo::node
