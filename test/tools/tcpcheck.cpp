// colo-tcpcheck: checksummed TCP traffic for the datapath tests.
//   serve --bind IP:PORT (IPv6: [IP]:PORT) [--mode blocking|nonblocking|poll|epoll|splice] [--conns N] [--timeout-s T]
//       reads each connection to EOF, replies "<bytes> <hash>\n", closes. Exits after N connections.
//       --mode splice: moves the data with splice(2) into a pipe and reads that (Go's io.Copy
//       between two TCP connections, HAProxy's and nginx's splice do the same).
//   send --to IP:PORT --bytes N [--conns C] [--parallel P] [--seed S] [--rst] [--read blocking|poll|poll-blocking]
//       each connection sends N pattern bytes, shuts down its write side (half-close), reads the
//       reply and compares it with its own count and hash. --rst: write, then abort with RST.
//       --read poll-blocking: poll until the reply is there, then read it with a blocking read()
//       (a blocking reader that never sleeps in the read: what the guard must notice).
// Prints one summary line; exit 0 only when every connection checked out.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Hash {
  std::uint64_t h = 1469598103934665603ULL, n = 0;
  void add(const unsigned char* p, std::size_t len) {
    for (std::size_t i = 0; i < len; ++i) h = (h ^ p[i]) * 1099511628211ULL;
    n += len;
  }
};

void fill(std::vector<unsigned char>& buf, std::uint64_t& state) {
  for (std::size_t i = 0; i + 8 <= buf.size(); i += 8) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    std::memcpy(&buf[i], &state, 8);
  }
}

// "198.18.0.1:80" or "[2001:2::1]:80".
struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const { return ss.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&ss); }
};

Addr parseAddr(const std::string& s) {
  Addr a;
  const auto colon = s.rfind(':');
  const auto port = htons(static_cast<std::uint16_t>(std::stoi(s.substr(colon + 1))));
  std::string host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    v6->sin6_family = AF_INET6;
    v6->sin6_port = port;
    ::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &v6->sin6_addr);
    a.len = sizeof(sockaddr_in6);
  } else {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
    v4->sin_family = AF_INET;
    v4->sin_port = port;
    ::inet_pton(AF_INET, host.c_str(), &v4->sin_addr);
    a.len = sizeof(sockaddr_in);
  }
  return a;
}

bool writeAll(int fd, const unsigned char* p, std::size_t n) {
  while (n) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Reads to EOF through a pipe, with splice(2) from the socket (blocking) and read() from the pipe.
bool drainSplice(int fd, Hash& hash, bool& reset) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return false;
  std::vector<unsigned char> buf(64 * 1024);
  bool ok = true;
  for (;;) {
    const ssize_t n = ::splice(fd, nullptr, p[1], nullptr, buf.size(), SPLICE_F_MOVE);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ECONNRESET) reset = true;
      else std::fprintf(stderr, "splice: %s\n", std::strerror(errno));
      ok = reset;
      break;
    }
    for (ssize_t left = n; left > 0;) {
      const ssize_t r = ::read(p[0], buf.data(), std::min<std::size_t>(buf.size(), static_cast<std::size_t>(left)));
      if (r <= 0) {
        ok = false;
        break;
      }
      hash.add(buf.data(), static_cast<std::size_t>(r));
      left -= r;
    }
    if (!ok) break;
  }
  ::close(p[0]);
  ::close(p[1]);
  return ok;
}

// Reads to EOF in the given mode. Returns false on error other than a reset.
bool drain(int fd, const std::string& mode, Hash& hash, bool& reset) {
  if (mode == "splice") return drainSplice(fd, hash, reset);
  std::vector<unsigned char> buf(256 * 1024);
  int ep = -1;
  if (mode != "blocking") ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (mode == "epoll") {
    ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  bool ok = true;
  for (;;) {
    const ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r > 0) {
      hash.add(buf.data(), static_cast<std::size_t>(r));
      continue;
    }
    if (r == 0) break;
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) {
      reset = true;
      break;
    }
    if (errno == EAGAIN && mode != "blocking") {
      if (mode == "poll") {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 10000) <= 0) { ok = false; break; }
      } else if (mode == "epoll") {
        epoll_event ev{};
        if (::epoll_wait(ep, &ev, 1, 10000) <= 0) { ok = false; break; }
      } else {
        std::this_thread::yield();  // nonblocking: spin
      }
      continue;
    }
    std::fprintf(stderr, "read (%s): %s\n", mode.c_str(), std::strerror(errno));
    ok = false;
    break;
  }
  if (ep >= 0) ::close(ep);
  if (mode != "blocking") ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return ok;
}

int serve(std::map<std::string, std::string>& o) {
  const int conns = std::stoi(o.count("--conns") ? o["--conns"] : "1");
  const std::string mode = o.count("--mode") ? o["--mode"] : "blocking";
  const int timeout = std::stoi(o.count("--timeout-s") ? o["--timeout-s"] : "60");
  const auto a = parseAddr(o["--bind"]);
  int l = ::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(l, a.get(), a.len) != 0 || ::listen(l, 1024) != 0) {
    std::perror("bind/listen");
    return 2;
  }
  std::atomic<int> bad{0}, resets{0};
  std::vector<std::thread> threads;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
  for (int i = 0; i < conns; ++i) {
    pollfd p{l, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
      std::fprintf(stderr, "serve: timed out after %d of %d connections\n", i, conns);
      bad += conns - i;
      break;
    }
    int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    threads.emplace_back([c, mode, &bad, &resets] {
      Hash h;
      bool reset = false;
      if (!drain(c, mode, h, reset)) bad++;
      if (reset) resets++;
      else {
        const std::string reply = std::to_string(h.n) + " " + std::to_string(h.h) + "\n";
        if (!writeAll(c, reinterpret_cast<const unsigned char*>(reply.data()), reply.size())) bad++;
      }
      ::close(c);
    });
    if (threads.size() >= 512) {
      for (auto& t : threads) t.join();
      threads.clear();
    }
  }
  for (auto& t : threads) t.join();
  std::printf("serve: %d connections, mode %s, %d failed, %d reset\n", conns, mode.c_str(), bad.load(), resets.load());
  return bad == 0 ? 0 : 1;
}

int send(std::map<std::string, std::string>& o) {
  const std::uint64_t bytes = std::stoull(o["--bytes"]);
  const int conns = std::stoi(o.count("--conns") ? o["--conns"] : "1");
  const int parallel = std::stoi(o.count("--parallel") ? o["--parallel"] : "1");
  const std::uint64_t seed = std::stoull(o.count("--seed") ? o["--seed"] : "1");
  const bool rst = o.count("--rst") != 0;
  const bool pollReply = o.count("--read") && o["--read"] == "poll";  // event-loop style: poll, then non-blocking read
  const bool pollThenBlock = o.count("--read") && o["--read"] == "poll-blocking";
  const auto to = parseAddr(o["--to"]);
  std::atomic<int> bad{0};
  auto one = [&](int idx) {
    int s = ::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(s, to.get(), to.len) != 0) {
      std::perror("connect");
      bad++;
      ::close(s);
      return;
    }
    std::uint64_t state = seed * 1000003ULL + static_cast<std::uint64_t>(idx) + 1;
    std::vector<unsigned char> buf(std::min<std::uint64_t>(bytes, 1 << 20) / 8 * 8 + 8);
    Hash h;
    std::uint64_t left = bytes;
    while (left) {
      fill(buf, state);
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size()));
      if (!writeAll(s, buf.data(), n)) {
        std::fprintf(stderr, "send: write failed: %s\n", std::strerror(errno));
        bad++;
        ::close(s);
        return;
      }
      h.add(buf.data(), n);
      left -= n;
    }
    if (rst) {
      linger lg{1, 0};
      ::setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      ::close(s);
      return;
    }
    ::shutdown(s, SHUT_WR);
    if (pollReply) ::fcntl(s, F_SETFL, ::fcntl(s, F_GETFL) | O_NONBLOCK);
    char reply[64] = {};
    std::size_t got = 0;
    std::string readErr;
    for (;;) {
      if (pollThenBlock) {
        pollfd p{s, POLLIN, 0};
        (void)::poll(&p, 1, 10000);
      }
      const ssize_t r = ::read(s, reply + got, sizeof(reply) - 1 - got);
      if (r == 0) break;
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN && pollReply) {
        pollfd p{s, POLLIN, 0};
        if (::poll(&p, 1, 10000) > 0) continue;
      }
      if (r < 0) {
        readErr = std::string(" (blocking read failed: ") + std::strerror(errno) + ")";
        break;
      }
      got += static_cast<std::size_t>(r);
    }
    const std::string want = std::to_string(h.n) + " " + std::to_string(h.h) + "\n";
    if (want != std::string(reply, got)) {
      std::fprintf(stderr, "send: connection %d: sent %s got '%s'%s\n", idx, want.substr(0, want.size() - 1).c_str(),
                   std::string(reply, got).c_str(), readErr.c_str());
      bad++;
    }
    ::close(s);
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (int base = 0; base < conns; base += parallel) {
    std::vector<std::thread> ts;
    for (int i = base; i < std::min(conns, base + parallel); ++i) ts.emplace_back(one, i);
    for (auto& t : ts) t.join();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("send: %d connections x %llu bytes, %d parallel, %d mismatched, %.2f s, %.2f Gbit/s\n", conns,
              static_cast<unsigned long long>(bytes), parallel, bad.load(), secs,
              static_cast<double>(bytes) * conns * 8 / secs / 1e9);
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: colo-tcpcheck serve|send [options]\n");
    return 2;
  }
  std::map<std::string, std::string> o;
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--rst") o[k] = "1";
    else if (i + 1 < argc) o[k] = argv[++i];
  }
  const std::string cmd = argv[1];
  if (cmd == "serve") return serve(o);
  if (cmd == "send") return send(o);
  std::fprintf(stderr, "usage: colo-tcpcheck serve|send [options]\n");
  return 2;
}
