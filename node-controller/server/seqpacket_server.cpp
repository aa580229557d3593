#include "server/seqpacket_server.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <vector>

namespace colo::node {

namespace code = wire::code;
using Clock = std::chrono::steady_clock;

SeqpacketServer::SeqpacketServer(std::string name, Metrics& metrics, RequestHandler handler)
    : name_(std::move(name)), metrics_(metrics), handler_(std::move(handler)) {
  metrics_.describe("colo_wire_errors_total", "counter", "Malformed or refused wire protocol messages, by socket and reason.");
  metrics_.describe("colo_wire_connections_rejected_total", "counter", "Connections closed at once because too many were open.");
}

SeqpacketServer::~SeqpacketServer() { stop(); }

Status SeqpacketServer::start(const std::string& path, unsigned mode) {
  auto l = wire::listenUnix(path, mode);
  if (!l) return l.error();
  listener_ = std::move(l.value());
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) return Error::fromErrno("eventfd");
  path_ = path;
  running_ = true;
  thread_ = std::thread([this] { loop(); });
  spdlog::info("{}: serving the colo wire protocol v{} on {}", name_, wire::kVersion, path);
  return {};
}

void SeqpacketServer::stop() {
  if (!running_.exchange(false)) return;
  const std::uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  listener_.reset();
  if (!path_.empty() && path_[0] != '@') ::unlink(path_.c_str());
  spdlog::info("{}: stopped", name_);
}

bool SeqpacketServer::serveOne(int fd, const PeerCred& cred) {
  auto msg = wire::recv(fd);
  if (!msg) {
    const auto& e = msg.error();
    if (e.code == "closed") return false;
    metrics_.add("colo_wire_errors_total", {{"socket", name_}, {"reason", e.code}});
    spdlog::warn("{}: bad message from pid {}: {}", name_, cred.pid, e.message);
    if (e.code == code::kTooLarge || e.code == code::kBadRequest) {
      return static_cast<bool>(wire::send(fd, wire::errorReply(nullptr, e.code, e.message)));
    }
    return false;
  }
  nlohmann::json reply;
  if (auto v = wire::validateRequest(msg->body); !v) {
    metrics_.add("colo_wire_errors_total", {{"socket", name_}, {"reason", v.error().code}});
    reply = wire::errorReply(msg->body, v.error().code, v.error().message);
  } else {
    reply = handler_(*msg, cred);
  }
  if (auto s = wire::send(fd, reply); !s) {
    spdlog::debug("{}: reply to pid {} not delivered: {}", name_, cred.pid, s.error().message);
    return false;
  }
  return true;
}

void SeqpacketServer::loop() {
  struct Conn {
    UniqueFd fd;
    PeerCred cred;
    Clock::time_point last;
  };
  std::map<int, Conn> conns;
  std::vector<pollfd> fds;
  while (running_) {
    fds.clear();
    fds.push_back({wake_.get(), POLLIN, 0});
    fds.push_back({listener_.get(), POLLIN, 0});
    for (const auto& [fd, c] : conns) fds.push_back({fd, POLLIN, 0});
    const int n = ::poll(fds.data(), fds.size(), 1000);
    if (n < 0 && errno != EINTR) {
      spdlog::error("{}: {}", name_, Error::fromErrno("poll").message);
      continue;
    }
    if (!running_) break;
    const auto now = Clock::now();
    if (n > 0 && (fds[1].revents & POLLIN)) {
      UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (c) {
        if (conns.size() >= kMaxConnections) {
          metrics_.add("colo_wire_connections_rejected_total", {{"socket", name_}});
          spdlog::warn("{}: {} connections open; refusing another", name_, conns.size());
        } else {
          ucred uc{};
          socklen_t len = sizeof(uc);
          ::getsockopt(c.get(), SOL_SOCKET, SO_PEERCRED, &uc, &len);
          const int key = c.get();
          conns[key] = Conn{std::move(c), PeerCred{uc.pid, uc.uid, uc.gid}, now};
        }
      }
    }
    for (std::size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it = conns.find(fds[i].fd);
      bool keep = (fds[i].revents & POLLIN) && serveOne(it->first, it->second.cred);
      if (keep) it->second.last = now;
      else conns.erase(it);
    }
    for (auto it = conns.begin(); it != conns.end();) {
      if (now - it->second.last > kIdleTimeout) it = conns.erase(it);
      else ++it;
    }
  }
}

}  // namespace colo::node
