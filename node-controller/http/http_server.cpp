#include "http/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>

#include "http/http_request.h"

namespace colo::node {

namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  UniqueFd fd;
  bool local = false;  // the peer is on this host (loopback)
  bool writing = false;
  std::string in, out;
  std::size_t sent = 0;
  Clock::time_point accepted, deadline;
};

bool isLoopback(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return (ntohl(reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr) >> 24) == 127;
  if (a.ss_family != AF_INET6) return false;
  const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a).sin6_addr;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

http::Response route(const http::RequestHead& h, bool local, const HttpSources& s) {
  http::Response r;
  if (h.method != "GET" && h.method != "HEAD") return {405, "text/plain", "only GET and HEAD are served\n"};
  r.headOnly = h.method == "HEAD";
  if (h.path == "/healthz") {
    r.body = "ok\n";
  } else if (h.path == "/readyz") {
    const auto j = s.readiness();
    r.status = j.value("ready", false) ? 200 : 503;
    r.contentType = "application/json";
    r.body = j.dump(2) + "\n";
  } else if (h.path == "/metrics") {
    r.contentType = "text/plain; version=0.0.4";
    r.body = s.metrics();
  } else if (h.path == "/debug/pods") {
    if (!local && !s.exposeDebugPods) return {403, "text/plain", "/debug/pods is served only to this host (exposeDebugPods: false)\n"};
    r.contentType = "application/json";
    r.body = s.pods().dump(2) + "\n";
  } else {
    return {404, "text/plain", "not found; colo-node serves /healthz /readyz /metrics /debug/pods\n"};
  }
  return r;
}

}  // namespace

HttpServer::HttpServer(HttpSources sources, HttpLimits limits) : sources_(std::move(sources)), limits_(limits) {}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::start(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return Error::make("invalid_argument", "httpAddress '" + address + "' is not HOST:PORT");
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = address.substr(colon + 1);
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) || std::stoi(port) > 65535)
    return Error::make("invalid_argument", "httpAddress '" + address + "' has no valid port");

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return Error::make("invalid_argument", "httpAddress '" + address + "': " + ::gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, ::freeaddrinfo);
  Error last = Error::make("io", "cannot bind HTTP on " + address);
  for (auto* ai = found; ai; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) continue;
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
      last = Error::fromErrno("bind/listen HTTP on " + address);
      continue;
    }
    listener_ = std::move(fd);
    break;
  }
  if (!listener_) return last;
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port : reinterpret_cast<sockaddr_in&>(bound).sin_port);

  epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  wake_ = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!epoll_ || !wake_) return Error::fromErrno("epoll/eventfd for HTTP");
  epoll_event ev{.events = EPOLLIN, .data = {.fd = listener_.get()}};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &ev);
  ev.data.fd = wake_.get();
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
  thread_ = std::thread([this] { loop(); });
  spdlog::info("http: serving /healthz /readyz /metrics /debug/pods on {}:{}", host, port_);
  return {};
}

void HttpServer::stop() {
  if (!thread_.joinable()) return;
  const std::uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

void HttpServer::loop() {
  std::map<int, Conn> conns;
  bool listening = true;  // false while accept is backed off after EMFILE/ENFILE
  Clock::time_point resumeAccept{};
  std::uint64_t dropped = 0, droppedLogged = 0;
  Clock::time_point lastDropLog{};

  auto close = [&](int fd) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    conns.erase(fd);
  };
  auto setListening = [&](bool on) {
    if (on == listening) return;
    epoll_event ev{.events = EPOLLIN, .data = {.fd = listener_.get()}};
    ::epoll_ctl(epoll_.get(), on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, listener_.get(), &ev);
    listening = on;
  };
  // Sends what the socket takes now; the rest when it says writable.
  auto flush = [&](Conn& c) {
    while (c.sent < c.out.size()) {
      const ssize_t n = ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.sent += static_cast<std::size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return false;
      } else {
        return true;  // gone: done with it
      }
    }
    return true;
  };
  auto answer = [&](Conn& c, const http::Response& r) {
    c.out = http::serialize(r);
    c.in.clear();
    c.in.shrink_to_fit();
    c.writing = true;
    c.deadline = Clock::now() + limits_.writeDeadline;
    if (flush(c)) return close(c.fd.get());
    epoll_event ev{.events = EPOLLOUT, .data = {.fd = c.fd.get()}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
  };
  auto acceptAll = [&] {
    for (;;) {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      UniqueFd fd(::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: pause accepting instead of waking on the same full queue.
          setListening(false);
          resumeAccept = Clock::now() + std::chrono::milliseconds(100);
        }
        return;
      }
      if (conns.size() >= limits_.maxConnections) {
        // Full: make room by dropping whoever has waited longest for its own request.
        auto oldest = conns.end();
        for (auto it = conns.begin(); it != conns.end(); ++it)
          if (!it->second.writing && (oldest == conns.end() || it->second.accepted < oldest->second.accepted)) oldest = it;
        ++dropped;
        if (oldest == conns.end()) continue;  // all busy taking answers: the newcomer waits its turn elsewhere
        close(oldest->first);
      }
      const int raw = fd.get();
      Conn c{.fd = std::move(fd), .local = isLoopback(peer), .accepted = Clock::now()};
      c.deadline = c.accepted + limits_.headDeadline;
      epoll_event ev{.events = EPOLLIN | EPOLLRDHUP, .data = {.fd = raw}};
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, raw, &ev);
      conns.emplace(raw, std::move(c));
    }
  };
  auto readFrom = [&](Conn& c) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return close(c.fd.get());
      if (n < 0) break;
      c.in.append(buf, static_cast<std::size_t>(n));
      if (c.in.size() >= http::kMaxRequestHead) break;
    }
    const auto head = http::parseRequestHead(c.in);
    switch (head.state) {
      case http::RequestHead::State::Incomplete: return;
      case http::RequestHead::State::Bad: return answer(c, {400, "text/plain", "bad request\n"});
      case http::RequestHead::State::TooLarge: return answer(c, {431, "text/plain", "request head over 8 KiB\n"});
      case http::RequestHead::State::Complete: break;
    }
    http::Response r;
    try {
      r = route(head, c.local, sources_);
    } catch (const std::exception& e) {
      spdlog::error("http: {} {}: {}", head.method, head.path, e.what());
      r = {500, "text/plain", "internal error\n"};
    }
    answer(c, r);
  };

  epoll_event events[64];
  for (;;) {
    const auto now = Clock::now();
    auto next = now + std::chrono::seconds(1);
    for (const auto& [fd, c] : conns) next = std::min(next, c.deadline);
    if (!listening) next = std::min(next, resumeAccept);
    const auto waitMs = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
    const int n = ::epoll_wait(epoll_.get(), events, 64, static_cast<int>(std::max<long long>(waitMs, 0) + 1));
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_.get()) return;  // stop(): every connection closes with the map
      if (fd == listener_.get()) {
        acceptAll();
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      if (it->second.writing) {
        if ((events[i].events & (EPOLLERR | EPOLLHUP)) || flush(it->second)) close(fd);
      } else {
        readFrom(it->second);
      }
    }
    const auto after = Clock::now();
    for (auto it = conns.begin(); it != conns.end();) {
      if (it->second.deadline <= after) {
        ++dropped;
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->first, nullptr);
        it = conns.erase(it);
      } else {
        ++it;
      }
    }
    if (!listening && after >= resumeAccept) setListening(true);
    if (dropped != droppedLogged && after - lastDropLog > std::chrono::seconds(10)) {
      spdlog::warn("http: dropped {} connections that did not send their request or take the answer in time (or made room for others)",
                   dropped - droppedLogged);
      droppedLogged = dropped;
      lastDropLog = after;
    }
  }
}

}  // namespace colo::node
