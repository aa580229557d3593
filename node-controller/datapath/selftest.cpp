#include "datapath/selftest.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "colo/common/unique_fd.h"
#include "netlink/route_socket.h"

namespace colo::node {
namespace {

// Two "pods" on the namespace's loopback, one pair per family: IPv4 from 198.18.0.0/15 and IPv6
// from 2001:2::/48 (the benchmarking ranges). The namespace is new and has no route out.
struct Family {
  const char* suffix;  // appended to the check names ("" for IPv4, the checks' historic names)
  int af;
  const char* client;
  const char* server;
  int prefix;
};
constexpr Family kIpv4{"", AF_INET, "198.18.255.1", "198.18.255.2", 32};
constexpr Family kIpv6{"_ipv6", AF_INET6, "2001:2::1", "2001:2::2", 128};

Status fail(const std::string& why) { return Error::make("selftest", why); }

Status addAddresses(netlink::RouteSocket& rt, const Family& f) {
  for (const char* ip : {f.client, f.server}) {
    if (auto s = rt.addAddress("lo", std::string(ip) + "/" + std::to_string(f.prefix)); !s) return s;
  }
  for (const char* ip : {f.client, f.server}) {
    if (auto s = netlink::RouteSocket::waitReachable(ip, std::chrono::seconds(2)); !s) return s;
  }
  return {};
}

sockaddr_storage addr(const Family& f, const char* ip, std::uint16_t port) {
  sockaddr_storage ss{};
  if (f.af == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    ::inet_pton(AF_INET, ip, &a->sin_addr);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    ::inet_pton(AF_INET6, ip, &a->sin6_addr);
  }
  return ss;
}

socklen_t addrLen(const Family& f) { return f.af == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6); }

struct Pair {
  UniqueFd client, server;
};

Expected<Pair> connectPair(const Family& f) {
  UniqueFd l(::socket(f.af, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l) return Error::fromErrno("socket");
  auto sa = addr(f, f.server, 0);
  if (::bind(l.get(), reinterpret_cast<sockaddr*>(&sa), addrLen(f)) != 0) return Error::fromErrno(std::string("bind ") + f.server);
  if (::listen(l.get(), 16) != 0) return Error::fromErrno("listen");
  socklen_t len = sizeof(sa);
  ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  Pair p;
  p.client.reset(::socket(f.af, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto ca = addr(f, f.client, 0);
  if (::bind(p.client.get(), reinterpret_cast<sockaddr*>(&ca), addrLen(f)) != 0) return Error::fromErrno(std::string("bind ") + f.client);
  if (::connect(p.client.get(), reinterpret_cast<sockaddr*>(&sa), addrLen(f)) != 0) return Error::fromErrno("connect");
  p.server.reset(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!p.server) return Error::fromErrno("accept");
  return p;
}

bool writeAll(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Reads exactly n bytes with a deadline; "" on success, else what went wrong.
std::string readExactly(int fd, char* out, std::size_t n, int timeoutMs = 2000) {
  std::size_t got = 0;
  while (got < n) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeoutMs) <= 0) return "timed out after " + std::to_string(got) + " of " + std::to_string(n) + " bytes";
    const ssize_t r = ::read(fd, out + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return std::string("read: ") + std::strerror(errno);
    if (r == 0) return "EOF after " + std::to_string(got) + " bytes";
    got += static_cast<std::size_t>(r);
  }
  return "";
}

std::vector<char> pattern(std::size_t n, unsigned seed) {
  std::vector<char> v(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return v;
}

Status integrity(const Family& f, const SelfTestHooks& hooks) {
  const auto redirectedBefore = hooks.redirectedMessages();
  auto p = connectPair(f);
  if (!p) return p.error();
  const std::size_t n = 4 << 20;
  for (int dir = 0; dir < 2; ++dir) {
    const int from = dir == 0 ? p->client.get() : p->server.get();
    const int to = dir == 0 ? p->server.get() : p->client.get();
    auto data = pattern(n, static_cast<unsigned>(dir + 1));
    std::vector<char> got(n);
    std::string err;
    std::thread reader([&] { err = readExactly(to, got.data(), n); });
    const bool wrote = writeAll(from, data.data(), n);
    reader.join();
    if (!wrote) return fail("write failed: " + std::string(std::strerror(errno)));
    if (!err.empty()) return fail(err);
    if (got != data) return fail("data corrupted in direction " + std::to_string(dir));
  }
  const auto after = hooks.redirectedMessages();
  if (after <= redirectedBefore) return fail("no message was redirected: sockets were not spliced (is colo-node inside the attached cgroup?)");
  return {};
}

Status fionread(const Family& f) {
  auto p = connectPair(f);
  if (!p) return p.error();
  const std::string msg(1000, 'x');
  if (!writeAll(p->client.get(), msg.data(), msg.size())) return fail("write");
  pollfd pf{p->server.get(), POLLIN, 0};
  if (::poll(&pf, 1, 1000) <= 0) return fail("no POLLIN after write");
  int avail = -1;
  for (int i = 0; i < 100 && avail != 1000; ++i) {
    if (::ioctl(p->server.get(), FIONREAD, &avail) != 0) return Error::fromErrno("ioctl(FIONREAD)");
    if (avail != 1000) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (avail != 1000) return fail("FIONREAD says " + std::to_string(avail) + " of 1000 bytes");
  return {};
}

Status wakeup(const Family& f, bool useEpoll) {
  auto p = connectPair(f);
  if (!p) return p.error();
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    (void)writeAll(p->client.get(), "ping", 4);
  });
  int ready = 0;
  if (useEpoll) {
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, p->server.get(), &ev);
    ready = ::epoll_wait(ep.get(), &ev, 1, 1000);
  } else {
    pollfd pf{p->server.get(), POLLIN, 0};
    ready = ::poll(&pf, 1, 1000);
  }
  writer.join();
  if (ready != 1) return fail(std::string(useEpoll ? "epoll" : "poll") + " did not wake up within 1 s of a write");
  return {};
}

// The request/reply pattern of many clients: write, shutdown(SHUT_WR), then a blocking read of
// the reply. The server answers a little later, so the client is asleep in read() when the ACK of
// its FIN arrives. Kernels whose tcp_bpf_recvmsg turns that wake-up into EAGAIN fail here.
Status blockingRead(const Family& f) {
  for (int i = 0; i < 40; ++i) {
    auto p = connectPair(f);
    if (!p) return p.error();
    timeval tv{2, 0};
    ::setsockopt(p->client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string serverErr;
    std::thread server([&] {
      char buf[64];
      std::size_t got = 0;
      for (;;) {
        const ssize_t r = ::read(p->server.get(), buf, sizeof(buf));
        if (r > 0) got += static_cast<std::size_t>(r);
        if (r == 0) break;
        if (r < 0 && errno != EINTR) {
          serverErr = std::string("server read: ") + std::strerror(errno);
          return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      (void)writeAll(p->server.get(), "reply", 5);
      p->server.reset();
    });
    if (!writeAll(p->client.get(), "0123456789", 10)) {
      server.join();
      return fail("write");
    }
    ::shutdown(p->client.get(), SHUT_WR);
    char buf[16];
    std::size_t got = 0;
    std::string err;
    for (;;) {
      const ssize_t r = ::read(p->client.get(), buf, sizeof(buf));
      if (r > 0) {
        got += static_cast<std::size_t>(r);
        continue;
      }
      if (r == 0) break;
      if (errno == EINTR) continue;
      err = "blocking read() returned " + std::string(std::strerror(errno)) + " after write/shutdown, with " + std::to_string(got) +
            " of 5 reply bytes (round " + std::to_string(i + 1) + ")";
      break;
    }
    server.join();
    if (!serverErr.empty()) return fail(serverErr);
    if (!err.empty()) return fail(err);
    if (got != 5) return fail("blocking read got " + std::to_string(got) + " of 5 reply bytes");
  }
  return {};
}

Status halfClose(const Family& f) {
  auto p = connectPair(f);
  if (!p) return p.error();
  ::shutdown(p->client.get(), SHUT_WR);
  char c;
  pollfd pf{p->server.get(), POLLIN, 0};
  if (::poll(&pf, 1, 1000) != 1 || ::read(p->server.get(), &c, 1) != 0) return fail("server did not see EOF after client shutdown");
  if (!writeAll(p->server.get(), "still here", 10)) return fail("server cannot write after the client's half-close");
  char buf[10];
  if (auto e = readExactly(p->client.get(), buf, 10); !e.empty()) return fail("client after half-close: " + e);
  return {};
}

Status reset(const Family& f) {
  auto p = connectPair(f);
  if (!p) return p.error();
  linger lg{1, 0};
  ::setsockopt(p->client.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  p->client.reset();  // RST
  pollfd pf{p->server.get(), POLLIN, 0};
  if (::poll(&pf, 1, 1000) != 1) return fail("peer did not notice the RST within 1 s");
  char c;
  const ssize_t r = ::read(p->server.get(), &c, 1);
  if (r > 0) return fail("read returned data after RST");
  return {};
}

Status sendfileInto(const Family& f) {
  auto p = connectPair(f);
  if (!p) return p.error();
  const std::size_t n = 1 << 20;
  auto data = pattern(n, 7);
  UniqueFd mem(::memfd_create("colo-selftest", MFD_CLOEXEC));
  if (!mem || !writeAll(mem.get(), data.data(), n)) return fail("memfd");
  std::vector<char> got(n);
  std::string err;
  std::thread reader([&] { err = readExactly(p->server.get(), got.data(), n); });
  off_t off = 0;
  while (static_cast<std::size_t>(off) < n) {
    if (::sendfile(p->client.get(), mem.get(), &off, n - static_cast<std::size_t>(off)) <= 0) break;
  }
  reader.join();
  if (!err.empty()) return fail("sendfile: " + err);
  if (got != data) return fail("sendfile: data corrupted");
  return {};
}

// A reader that moves the socket's data with splice(2) (Go's io.Copy between two TCPConns,
// HAProxy, nginx's splice): tcp_splice_read reads sk_receive_queue only, never the psock queue the
// redirected data sits in, so on a spliced socket it finds nothing and then the FIN: 0 bytes, EOF.
Status spliceRead(const Family& f) {
  auto p = connectPair(f);
  if (!p) return p.error();
  const std::size_t n = 64 * 1024;
  auto data = pattern(n, 11);
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC | O_NONBLOCK) != 0) return Error::fromErrno("pipe2");
  UniqueFd pr(pfd[0]), pw(pfd[1]);
  if (!writeAll(p->client.get(), data.data(), n)) return fail("write");
  ::shutdown(p->client.get(), SHUT_WR);
  std::vector<char> got;
  std::string end = "timed out";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
    pollfd pl{p->server.get(), POLLIN, 0};
    if (::poll(&pl, 1, 200) <= 0) continue;
    const ssize_t r = ::splice(p->server.get(), nullptr, pw.get(), nullptr, n, SPLICE_F_NONBLOCK);
    if (r == 0) {
      end = "EOF";
      break;
    }
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return fail(std::string("splice(2) from the socket: ") + std::strerror(errno) + " after " + std::to_string(got.size()) + " bytes");
    }
    char buf[65536];
    ssize_t m;
    while ((m = ::read(pr.get(), buf, sizeof(buf))) > 0) got.insert(got.end(), buf, buf + m);
  }
  if (got.size() < n) {
    return fail("splice(2) from the socket got " + std::to_string(got.size()) + " of " + std::to_string(n) + " bytes, then " + end +
                " (tcp_splice_read does not read the sockmap's queue: the data is lost to that reader)");
  }
  if (std::vector<char>(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(n)) != data) return fail("splice(2): data corrupted");
  return {};
}

// Reads until EOF (or more than `cap` bytes) with a deadline per wait; "" on EOF, else what went wrong.
std::string readToEof(int fd, std::vector<char>& out, std::size_t cap, int timeoutMs = 2000) {
  char buf[4096];
  while (out.size() <= cap) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeoutMs) <= 0) return "timed out after " + std::to_string(out.size()) + " bytes";
    const ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) return std::string("read: ") + std::strerror(errno) + " after " + std::to_string(out.size()) + " bytes";
    if (r == 0) return "";
    out.insert(out.end(), buf, buf + r);
  }
  return "more than " + std::to_string(cap) + " bytes";
}

// Urgent data (MSG_OOB) mid-stream, as telnet, FTP's ABOR and Oracle Net's breaks send it. On the
// normal path TCP marks the byte urgent and, with SO_OOBINLINE off, takes it out of the stream:
// the reader gets exactly the bytes before and after it. On a spliced socket tcp_bpf_sendmsg
// copies the byte into the sk_msg like any other and the redirect queues it on the peer's psock
// with no urgent mark: the reader gets it in band, one byte too many, and the stream is corrupted.
Status urgentData(const Family& f) {
  auto p = connectPair(f);
  if (!p) return p.error();
  const std::size_t before = 5000, after = 5000;
  auto data = pattern(before + after, 13);
  std::vector<char> got;
  std::string err;
  std::thread reader([&] { err = readToEof(p->server.get(), got, before + after + 64); });
  bool wrote = writeAll(p->client.get(), data.data(), before);
  std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the urgent byte in a segment of its own
  wrote = wrote && ::send(p->client.get(), "!", 1, MSG_OOB) == 1;
  const int sendErr = errno;
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  wrote = wrote && writeAll(p->client.get(), data.data() + before, after);
  ::shutdown(p->client.get(), SHUT_WR);
  reader.join();
  if (!wrote) return fail(std::string("write or send(MSG_OOB) failed: ") + std::strerror(sendErr));
  if (!err.empty()) return fail("reader: " + err);
  if (got == data) return {};
  const bool inBand = got.size() == data.size() + 1 && got[before] == '!' &&
                      std::equal(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(before), got.begin()) &&
                      std::equal(data.begin() + static_cast<std::ptrdiff_t>(before), data.end(), got.begin() + static_cast<std::ptrdiff_t>(before) + 1);
  if (inBand) {
    return fail("the reader got " + std::to_string(got.size()) + " bytes where the normal path delivers " + std::to_string(data.size()) +
                ": the urgent byte (MSG_OOB) came in band at offset " + std::to_string(before) +
                " (the sockmap redirect drops the urgent mark): the stream is corrupted");
  }
  return fail("the reader got " + std::to_string(got.size()) + " bytes where the normal path delivers " + std::to_string(data.size()) +
              " (the urgent byte excluded), and they differ");
}

// A signal (SA_RESTART, so a plain socket restarts the read) arrives while a reader sleeps in a
// blocking read of a spliced socket; the reply follows. Kernels whose tcp_bpf_recvmsg ends its one
// wait on any wake-up return EAGAIN instead of the reply.
std::atomic<int> gSignals{0};
void onSelfTestSignal(int) { gSignals.fetch_add(1, std::memory_order_relaxed); }

Status blockingReadSignal(const Family& f) {
  struct sigaction sa{}, old{};
  sa.sa_handler = onSelfTestSignal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  // SIGURG: ignored by default and raised by the kernel only for sockets with an owner (F_SETOWN),
  // which colo-node never sets; the handler is put back as it was.
  if (::sigaction(SIGURG, &sa, &old) != 0) return Error::fromErrno("sigaction(SIGURG)");
  Status out;
  for (int round = 0; round < 3 && out; ++round) {
    auto p = connectPair(f);
    if (!p) {
      out = p.error();
      break;
    }
    timeval tv{3, 0};  // a safety net only: the reply comes after 150 ms
    ::setsockopt(p->client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::atomic<bool> reading{false};
    std::string err;
    std::size_t got = 0;
    std::thread reader([&] {
      char buf[16];
      reading = true;
      const auto t0 = std::chrono::steady_clock::now();
      while (got < 5) {
        const ssize_t r = ::read(p->client.get(), buf, sizeof(buf));
        if (r > 0) {
          got += static_cast<std::size_t>(r);
          continue;
        }
        if (r == 0) break;
        if (errno == EINTR) continue;
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
        err = "blocking read() returned " + std::string(std::strerror(errno)) + " after a signal (SA_RESTART), " + std::to_string(ms) +
              " ms into the wait, with " + std::to_string(got) + " of 5 reply bytes";
        break;
      }
    });
    while (!reading) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // asleep in read() by now
    ::pthread_kill(reader.native_handle(), SIGURG);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    (void)writeAll(p->server.get(), "reply", 5);
    reader.join();
    if (!err.empty()) out = fail(err);
    else if (got != 5) out = fail("blocking read got " + std::to_string(got) + " of 5 reply bytes after a signal");
  }
  ::sigaction(SIGURG, &old, nullptr);
  return out;
}

// The peer aborts (RST) while a reader sleeps in a blocking read: the read must fail with
// ECONNRESET, as on a plain socket, not with EAGAIN.
Status blockingReadRst(const Family& f) {
  auto p = connectPair(f);
  if (!p) return p.error();
  timeval tv{3, 0};
  ::setsockopt(p->client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::atomic<bool> reading{false};
  ssize_t r = 0;
  int err = 0;
  std::thread reader([&] {
    char c;
    reading = true;
    do {
      r = ::read(p->client.get(), &c, 1);
    } while (r < 0 && errno == EINTR);
    err = r < 0 ? errno : 0;
  });
  while (!reading) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  linger lg{1, 0};
  ::setsockopt(p->server.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  p->server.reset();  // RST
  reader.join();
  if (r < 0 && (err == ECONNRESET || err == EPIPE)) return {};
  if (r < 0) return fail("blocking read() woken by an RST returned " + std::string(std::strerror(err)) + " instead of ECONNRESET");
  return fail("blocking read() woken by an RST returned " + std::to_string(r) + " instead of failing with ECONNRESET");
}

// Data that took the normal TCP path (a first write that raced the peer's insertion, or data that
// arrived before the socket entered the sockhash) must count in FIONREAD once the socket is
// spliced. Since 929e30f93125 (6.6.128, 6.12.75, 6.18.14) FIONREAD on a sockhash socket without a
// verdict program counts only the psock queue and says 0: readers that size reads by it stall.
Status fionreadNormalPath(const Family& f, const SelfTestHooks& hooks) {
  if (!hooks.insertSocket) return fail("no way to insert a socket here");
  for (const char* ip : {f.client, f.server}) hooks.removePodAddress(ip);  // connect unspliced
  auto p = connectPair(f);
  Status out;
  for (const char* ip : {f.client, f.server}) {
    if (auto s = hooks.addPodAddress(ip); !s && out) out = s;
  }
  if (!out) return out;
  if (!p) return p.error();
  const std::string msg(1000, 'n');
  if (!writeAll(p->client.get(), msg.data(), msg.size())) return fail("write");
  pollfd pf{p->server.get(), POLLIN, 0};
  if (::poll(&pf, 1, 1000) <= 0) return fail("no POLLIN after a write over the normal path");
  int avail = -1;
  for (int i = 0; i < 100 && avail != 1000; ++i) {  // all 1000 bytes queued before the splice
    if (::ioctl(p->server.get(), FIONREAD, &avail) != 0) return Error::fromErrno("ioctl(FIONREAD)");
    if (avail != 1000) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (avail != 1000) return fail("before the splice FIONREAD says " + std::to_string(avail) + " of 1000 bytes");
  if (auto s = hooks.insertSocket(p->server.get()); !s) return s;
  if (::ioctl(p->server.get(), FIONREAD, &avail) != 0) return Error::fromErrno("ioctl(FIONREAD)");
  char buf[1000];
  const std::string readErr = readExactly(p->server.get(), buf, sizeof(buf));
  if (avail != 1000) {
    return fail("FIONREAD says " + std::to_string(avail) + " of 1000 bytes that arrived over the normal path before the splice" +
                (readErr.empty() ? " (a read gets them all)" : " (and a read: " + readErr + ")"));
  }
  if (!readErr.empty()) return fail("reading data that arrived before the splice: " + readErr);
  return {};
}

// The guard notices a blocking read on a spliced socket (data already queued, so nothing here
// depends on the EAGAIN fault).
Status guardSeesBlockingRead(const Family& f, const SelfTestHooks& hooks) {
  if (!hooks.guardBlockingReads) return fail("the guard is not loaded");
  const auto before = hooks.guardBlockingReads(f.client);
  if (!before) return fail("the guard is not loaded");
  auto p = connectPair(f);
  if (!p) return p.error();
  if (!writeAll(p->server.get(), "guard", 5)) return fail("write");
  pollfd pf{p->client.get(), POLLIN, 0};
  if (::poll(&pf, 1, 1000) <= 0) return fail("no POLLIN");
  char buf[5];
  if (::read(p->client.get(), buf, sizeof(buf)) != 5) return fail("read");  // blocking socket, no MSG_DONTWAIT
  std::optional<std::uint64_t> after;
  for (int i = 0; i < 100; ++i) {
    after = hooks.guardBlockingReads(f.client);
    if (after && *after > *before) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return fail("a blocking read on a spliced socket was not counted by the guard");
}

// Runs every check for one family, its two addresses in the pod map for the duration.
void runChecks(const Family& f, const SelfTestHooks& hooks, SelfTestResult& result) {
  for (const char* ip : {f.client, f.server}) {
    if (auto s = hooks.addPodAddress(ip); !s) {
      result.checks[std::string("setup") + f.suffix] = s.error().message;
      return;
    }
  }
  const std::vector<std::pair<const char*, std::function<Status()>>> checks = {
      {"integrity", [&] { return integrity(f, hooks); }},
      {"fionread", [&] { return fionread(f); }},
      {"poll", [&] { return wakeup(f, false); }},
      {"epoll", [&] { return wakeup(f, true); }},
      {"blocking_read", [&] { return blockingRead(f); }},
      {"half_close", [&] { return halfClose(f); }},
      {"rst", [&] { return reset(f); }},
      {"sendfile", [&] { return sendfileInto(f); }},
      {"blocking_read_signal", [&] { return blockingReadSignal(f); }},
      {"blocking_read_rst", [&] { return blockingReadRst(f); }},
      {"fionread_normal_path", [&] { return fionreadNormalPath(f, hooks); }},
      {"splice_read", [&] { return spliceRead(f); }},
      {"urgent_data", [&] { return urgentData(f); }},
      {kGuardCheck, [&] { return guardSeesBlockingRead(f, hooks); }},
  };
  for (const auto& [name, fn] : checks) {
    auto s = fn();
    result.checks[name + std::string(f.suffix)] = s ? "ok" : s.error().message;
  }
  for (const char* ip : {f.client, f.server}) hooks.removePodAddress(ip);
}

std::string baseName(const std::string& check) {
  const std::string suffix = kIpv6.suffix;
  return check.size() > suffix.size() && check.compare(check.size() - suffix.size(), suffix.size(), suffix) == 0
             ? check.substr(0, check.size() - suffix.size())
             : check;
}

bool isGuardCheck(const std::string& check) { return baseName(check) == kGuardCheck; }

}  // namespace

bool coveredByDeclaration(const std::string& check) {
  const std::string b = baseName(check);
  return b == "blocking_read" || b == "blocking_read_signal" || b == "blocking_read_rst" || b == "fionread_normal_path" ||
         b == "splice_read" || b == "urgent_data";
}

SelfTestResult::Verdict SelfTestResult::verdict() const {
  bool any = false, covered = true;
  for (const auto& [k, v] : checks) {
    if (isGuardCheck(k)) continue;
    any = true;
    if (v != "ok" && !coveredByDeclaration(k)) return Verdict::None;
    if (v != "ok") covered = false;
  }
  if (!any) return Verdict::None;
  return covered ? Verdict::Full : Verdict::PerPod;
}

bool SelfTestResult::guardPassed() const {
  bool any = false;
  for (const auto& [k, v] : checks) {
    if (!isGuardCheck(k)) continue;
    any = true;
    if (v != "ok") return false;
  }
  return any;
}

std::string SelfTestResult::guardFailures() const {
  std::string out;
  for (const auto& [k, v] : checks) {
    if (!isGuardCheck(k) || v == "ok") continue;
    if (!out.empty()) out += "; ";
    out += k + ": " + v;
  }
  return out.empty() && !guardPassed() ? "the guard's check did not run" : out;
}

std::string SelfTestResult::spliceFailures() const {
  std::string out;
  for (const auto& [k, v] : checks) {
    if (isGuardCheck(k) || v == "ok") continue;
    if (!out.empty()) out += "; ";
    out += k + ": " + v;
  }
  return out;
}

std::string SelfTestResult::failedNames(bool fold) const {
  std::vector<std::string> names;
  for (const auto& [k, v] : checks) {
    if (isGuardCheck(k) || v == "ok") continue;
    const std::string n = fold ? baseName(k) : k;
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

bool SelfTestResult::passed() const {
  for (const auto& [k, v] : checks) {
    if (v != "ok") return false;
  }
  return !checks.empty();
}

std::string SelfTestResult::failures() const {
  std::string out;
  for (const auto& [k, v] : checks) {
    if (v == "ok") continue;
    if (!out.empty()) out += "; ";
    out += k + ": " + v;
  }
  return out;
}

SelfTestResult runSelfTest(const SelfTestHooks& hooks) {
  SelfTestResult result;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      result.checks["setup"] = Error::fromErrno("unshare(CLONE_NEWNET)").message;
      return;
    }
    // The socket is bound to the namespace this thread is now in.
    auto rt = netlink::RouteSocket::open();
    if (!rt) {
      result.checks["setup"] = rt.error().message;
      return;
    }
    if (auto s = rt->setLinkUp("lo"); !s) {
      result.checks["setup"] = s.error().message;
      return;
    }
    if (auto s = addAddresses(*rt, kIpv4); !s) {
      result.checks["setup"] = s.error().message;
      return;
    }
    runChecks(kIpv4, hooks, result);
    // A node without IPv6 (ipv6.disable=1, disable_ipv6) still gets the splice for IPv4: its
    // IPv6 checks are skipped and say why, they do not fail.
    if (auto s = addAddresses(*rt, kIpv6); !s) {
      result.skipped["ipv6"] = "no IPv6 in the self-test's namespace: " + s.error().message;
      return;
    }
    runChecks(kIpv6, hooks, result);
  });
  t.join();
  return result;
}

}  // namespace colo::node
