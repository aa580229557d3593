// colo-bench-ipc: ping-pong latency and streaming throughput over every transport colo offers.
//   serve NAME PORT                                 in a pod: a colo name and a TCP port
//   ping   --to TARGET --via tcp|unix|channel --size S --iters N     -> "p50_us p99_us" (round trip)
//   stream --to TARGET --via tcp|unix|channel --size S --seconds T   -> "Gbit/s messages/s"
//   local  ping|stream --size S (--iters N | --seconds T)            the same rings between two threads
//   floor  --to TARGET --via channel --size S --iters N --rounds R    (or: local floor ...)
//          the hardware floor and the channel interleaved, round by round (floor, channel, floor, ...),
//          both pinned to CPUs 0 and 1: one JSON line with per-round p50/p99 and their medians.
//          The floor is two threads of this process handing one cache line back and forth (a
//          store, and a spin on the other's store): no transport can beat it on this machine.
//          The two-line floor (pair*) does the same with one line per direction, as two one-way
//          rings must.
// A connection starts with a control record: 'E' + u32 size (echo), 'A' (echo, every byte copied)
// or 'S' (sink); on a channel the first message carries it. On a channel, messages are written in
// place: by default only their first 8 bytes are touched (the transport copies nothing; the
// application builds its message where it lies); --copy all copies every byte, like a stream.
// Stream transports run both ends on CPU 0 (as sockperf does: a cross-core wake-up in a VM costs
// tens of microseconds); channel ends busy-poll, so they run on CPUs 0 and 1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "colo/colo.hpp"

namespace {

using Clock = std::chrono::steady_clock;

void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  ::sched_setaffinity(0, sizeof(s), &s);
}

// Round trips are timed with the CPU's counter where it has one (rdtsc, cntvct_el0), calibrated
// once against steady_clock: reading steady_clock costs about 70 ns in this VM, half a floor.
std::uint64_t ticks() {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#elif defined(__aarch64__)
  std::uint64_t v;
  asm volatile("isb; mrs %0, cntvct_el0" : "=r"(v));
  return v;
#else
  return static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
#endif
}

double ticksPerMicrosecond() {
  static const double perUs = [] {
    const auto t0 = Clock::now();
    const auto k0 = ticks();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto k1 = ticks();
    return static_cast<double>(k1 - k0) / std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }();
  return perUs;
}

double micros(std::uint64_t from, std::uint64_t to) { return static_cast<double>(to - from) / ticksPerMicrosecond(); }

bool readFull(int fd, void* p, std::size_t n) {
  auto* c = static_cast<char*>(p);
  while (n) {
    const ssize_t r = ::read(fd, c, n);
    if (r <= 0) return false;
    c += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool writeFull(int fd, const void* p, std::size_t n) {
  const auto* c = static_cast<const char*>(p);
  while (n) {
    const ssize_t w = ::write(fd, c, n);
    if (w <= 0) return false;
    c += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// ---- server side ----
void serveStream(int fd) {
  char mode;
  if (!readFull(fd, &mode, 1)) return;
  std::vector<char> buf(1 << 20);
  if (mode == 'E') {
    std::uint32_t size;
    if (!readFull(fd, &size, 4)) return;
    buf.resize(size);
    while (readFull(fd, buf.data(), size) && writeFull(fd, buf.data(), size)) {
    }
  } else {
    while (::read(fd, buf.data(), buf.size()) > 0) {
    }
  }
}

void serveChannel(colo_channel* ch) {
  const void* in;
  unsigned long len;
  if (colo_channel_read(ch, 5000, &in, &len) != COLO_OK || len < 1) return;
  const char mode = *static_cast<const char*>(in);
  colo_channel_release(ch);
  for (;;) {
    if (colo_channel_read(ch, -1, &in, &len) != COLO_OK) return;
    if (mode == 'E' || mode == 'A') {
      void* out;
      if (colo_channel_reserve(ch, len, -1, &out) != COLO_OK) return;
      std::memcpy(out, in, mode == 'A' ? len : std::min<unsigned long>(len, 8));
      colo_channel_release(ch);
      colo_channel_commit(ch, len);
    } else {
      colo_channel_release(ch);
    }
  }
}

int serve(const std::string& name, int port) {
  pin(1);
  auto l = colo::Listener::listen(name);
  if (!l) return std::fprintf(stderr, "listen: %s\n", l.failure.message.c_str()), 1;
  int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::bind(tcp, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(tcp, 16) != 0) return std::perror("tcp"), 1;
  std::printf("serving\n");
  std::fflush(stdout);
  for (;;) {
    pollfd fds[2] = {{l.value->fd(), POLLIN, 0}, {tcp, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[0].revents & (POLLHUP | POLLERR)) return 1;
    if (fds[0].revents & POLLIN) {
      auto c = l.value->accept(0);
      if (!c) continue;
      std::thread([conn = std::move(*c.value)]() mutable {
        char first;
        if (::recv(conn.fd(), &first, 1, MSG_PEEK) != 1) return;
        pin(first == 'C' ? 1 : 0);
        if (first == 'C') {
          auto ch = colo::Channel::accept(conn.fd(), 2000);
          if (ch) serveChannel(ch.value->get());
        } else {
          serveStream(conn.fd());
        }
      }).detach();
    }
    if (fds[1].revents & POLLIN) {
      const int c = ::accept4(tcp, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      std::thread([c] {
        pin(0);
        serveStream(c);
        ::close(c);
      }).detach();
    }
  }
}

// ---- client side ----
struct Endpoint {
  std::optional<colo::Client> client;
  std::optional<colo::Connection> conn;
  std::optional<colo::Channel> channel;
  colo_channel* ch = nullptr;  // set for channels (also for local pairs)
  int fd = -1;
};

bool sendControl(Endpoint& e, char mode, std::uint32_t size) {
  char ctl[5] = {mode};
  std::memcpy(ctl + 1, &size, 4);
  if (!e.ch) return writeFull(e.fd, ctl, mode == 'E' ? 5 : 1);
  void* out;
  if (colo_channel_reserve(e.ch, 1, 1000, &out) != COLO_OK) return false;
  *static_cast<char*>(out) = mode;
  return colo_channel_commit(e.ch, 1) == COLO_OK;
}

bool g_copyAll = false;

std::vector<double> pingPong(Endpoint& e, std::size_t size, long iters) {
  std::vector<char> buf(size, 'x');
  std::vector<double> rtt;
  rtt.reserve(static_cast<std::size_t>(iters));
  ticksPerMicrosecond();
  for (long i = 0; i < iters + 1000; ++i) {
    const auto t0 = ticks();
    if (e.ch) {
      void* out;
      if (colo_channel_reserve(e.ch, size, 5000, &out) != COLO_OK) break;
      std::memcpy(out, buf.data(), g_copyAll ? size : std::min<std::size_t>(size, 8));
      colo_channel_commit(e.ch, size);
      const void* in;
      unsigned long len;
      if (colo_channel_read(e.ch, 5000, &in, &len) != COLO_OK) break;
      std::memcpy(buf.data(), in, g_copyAll ? len : std::min<unsigned long>(len, 8));
      colo_channel_release(e.ch);
    } else {
      if (!writeFull(e.fd, buf.data(), size) || !readFull(e.fd, buf.data(), size)) break;
    }
    if (i >= 1000) rtt.push_back(micros(t0, ticks()));  // after warm-up
  }
  std::sort(rtt.begin(), rtt.end());
  return rtt;
}

double g_messagesPerSecond = 0;

double stream(Endpoint& e, std::size_t size, double seconds) {
  std::vector<char> buf(size, 'y');
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  const auto t0 = Clock::now();
  std::uint64_t bytes = 0;
  while (Clock::now() < end) {
    for (int k = 0; k < 64; ++k) {
      if (e.ch) {
        void* out;
        if (colo_channel_reserve(e.ch, size, 5000, &out) != COLO_OK) return 0;
        std::memcpy(out, buf.data(), g_copyAll ? size : std::min<std::size_t>(size, 8));
        colo_channel_commit(e.ch, size);
      } else if (!writeFull(e.fd, buf.data(), size)) {
        return 0;
      }
      bytes += size;
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  g_messagesPerSecond = static_cast<double>(bytes / size) / secs;
  return static_cast<double>(bytes) * 8 / secs / 1e9;
}

// ---- the floor: one cache line between CPU 0 (this thread) and CPU 1, each side spinning back
// to back on a load, as the channel does in its first phase of waiting. With `pair`, one line per
// direction instead (each side stores to its own line and spins on the other's): what any two
// one-way rings, each written by one side only, hand back and forth at the least ----

std::vector<double> floorRound(long iters, bool pair) {
  struct alignas(64) Line {
    std::atomic<std::uint64_t> v{0};
  };
  static Line lines[2];
  static std::uint64_t epoch = 0;  // values never repeat from one round to the next
  epoch += 1u << 30;
  Line& out = lines[0];
  Line& back = pair ? lines[1] : lines[0];
  const long total = iters + 1000;
  const std::uint64_t base = epoch;
  std::thread peer([&out, &back, total, base] {
    pin(1);
    for (long i = 0; i < total; ++i) {
      const std::uint64_t want = base + 2 * static_cast<std::uint64_t>(i) + 1;
      while (out.v.load(std::memory_order_acquire) != want) {
      }
      back.v.store(want + 1, std::memory_order_release);
    }
  });
  std::vector<double> rtt;
  rtt.reserve(static_cast<std::size_t>(iters));
  ticksPerMicrosecond();
  for (long i = 0; i < total; ++i) {
    const std::uint64_t mine = base + 2 * static_cast<std::uint64_t>(i) + 1;
    const auto t0 = ticks();
    out.v.store(mine, std::memory_order_release);
    while (back.v.load(std::memory_order_acquire) != mine + 1) {
    }
    if (i >= 1000) rtt.push_back(micros(t0, ticks()));
  }
  peer.join();
  std::sort(rtt.begin(), rtt.end());
  return rtt;
}

double at(const std::vector<double>& sorted, double q) { return sorted.empty() ? 0 : sorted[static_cast<std::size_t>(static_cast<double>(sorted.size() - 1) * q)]; }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Rounds of floor, two-line floor, then channel, so that a compile or a preemption on this shared
// machine falls on all alike; the ratios are taken round by round, then their medians.
void floorVsChannel(Endpoint& e, std::size_t size, long iters, int rounds) {
  std::vector<double> f50, f99, p50, p99, c50, c99, r50, r99, pr50, pr99;
  for (int r = 0; r < rounds; ++r) {
    std::fprintf(stderr, "\r  floor vs channel: round %d of %d", r + 1, rounds);
    const auto f = floorRound(iters, false);
    const auto p = floorRound(iters, true);
    const auto c = pingPong(e, size, iters);
    if (c.empty()) break;
    f50.push_back(at(f, 0.5)), f99.push_back(at(f, 0.99)), c50.push_back(at(c, 0.5)), c99.push_back(at(c, 0.99));
    p50.push_back(at(p, 0.5)), p99.push_back(at(p, 0.99));
    r50.push_back(c50.back() / f50.back()), r99.push_back(c99.back() / f99.back());
    pr50.push_back(p50.back() / f50.back()), pr99.push_back(p99.back() / f99.back());
  }
  std::fprintf(stderr, "\n");
  auto list = [](const std::vector<double>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    return s + "]";
  };
  std::printf("{\"rounds\":%zu,\"iters\":%ld,\"size\":%zu,\"floorP50\":%.4f,\"floorP99\":%.4f,\"channelP50\":%.4f,"
              "\"channelP99\":%.4f,\"ratioP50\":%.3f,\"ratioP99\":%.3f,\"pairP50\":%.4f,\"pairP99\":%.4f,"
              "\"pairRatioP50\":%.3f,\"pairRatioP99\":%.3f,\"perRound\":{\"floorP50\":%s,\"floorP99\":%s,"
              "\"pairP50\":%s,\"pairP99\":%s,\"channelP50\":%s,\"channelP99\":%s}}\n",
              c50.size(), iters, size, median(f50), median(f99), median(c50), median(c99), median(r50), median(r99),
              median(p50), median(p99), median(pr50), median(pr99), list(f50).c_str(), list(f99).c_str(),
              list(p50).c_str(), list(p99).c_str(), list(c50).c_str(), list(c99).c_str());
}

void report(const std::string& what, const std::vector<double>& rtt, double gbps) {
  if (!rtt.empty()) std::printf("%.3f %.3f\n", rtt[rtt.size() / 2], rtt[rtt.size() * 99 / 100]);
  else if (what == "stream") std::printf("%.2f %.0f\n", gbps, g_messagesPerSecond);
  else std::printf("nan nan\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string cmd = argv[1];
  std::map<std::string, std::string> o;
  for (int i = 2; i + 1 < argc; i += 2) o[argv[i]] = argv[i + 1];
  if (cmd == "serve") return serve(argv[2], std::stoi(argv[3]));
  const std::size_t size = std::stoul(o.count("--size") ? o["--size"] : "64");
  const long iters = std::stol(o.count("--iters") ? o["--iters"] : "20000");
  const double seconds = std::stod(o.count("--seconds") ? o["--seconds"] : "2");
  if (cmd == "local") {
    // Two threads of one process on the same rings: the monolith reference.
    const std::string what = argv[2];
    std::map<std::string, std::string> lo;
    for (int i = 3; i + 1 < argc; i += 2) lo[argv[i]] = argv[i + 1];
    const std::size_t lsize = std::stoul(lo.count("--size") ? lo["--size"] : "64");
    g_copyAll = lo.count("--copy") && lo["--copy"] == "all";
    colo_channel *a, *b;
    if (colo_channel_local_pair(std::stoull(lo.count("--bytes") ? lo["--bytes"] : "8388608"), &a, &b) != COLO_OK) return 1;
    std::thread server([&] {
      pin(1);
      serveChannel(b);
    });
    pin(0);
    Endpoint e;
    e.ch = a;
    sendControl(e, what == "stream" ? 'S' : (g_copyAll ? 'A' : 'E'), static_cast<std::uint32_t>(lsize));
    if (what == "floor") floorVsChannel(e, lsize, std::stol(lo.count("--iters") ? lo["--iters"] : "20000"), std::stoi(lo.count("--rounds") ? lo["--rounds"] : "21"));
    else if (what == "ping") report("ping", pingPong(e, lsize, std::stol(lo.count("--iters") ? lo["--iters"] : "20000")), 0);
    else report("stream", {}, stream(e, lsize, std::stod(lo.count("--seconds") ? lo["--seconds"] : "2")));
    std::fflush(stdout);
    std::_Exit(0);  // the server thread blocks forever by design
  }
  pin(0);
  Endpoint e;
  const std::string via = o["--via"];
  if (via == "tcp-direct") {  // plain TCP, no colo at all: the baseline
    const std::string to = o["--to"];
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(to.substr(to.rfind(':') + 1))));
    ::inet_pton(AF_INET, to.substr(0, to.rfind(':')).c_str(), &a.sin_addr);
    e.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(e.fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return std::perror("connect"), 1;
    int one = 1;
    ::setsockopt(e.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!sendControl(e, cmd == "ping" ? 'E' : 'S', static_cast<std::uint32_t>(size))) return 1;
    if (cmd == "ping") report("ping", pingPong(e, size, iters), 0);
    else report("stream", {}, stream(e, size, seconds));
    return 0;
  }
  auto client = colo::Client::open();
  if (!client) return std::fprintf(stderr, "%s\n", client.failure.message.c_str()), 2;
  e.client.emplace(std::move(*client.value));
  auto conn = e.client->dial(o["--to"]);
  if (!conn) return std::fprintf(stderr, "dial: %s\n", conn.failure.message.c_str()), 1;
  e.conn.emplace(std::move(*conn.value));
  e.fd = e.conn->fd();
  int one = 1;
  if (via == "tcp") ::setsockopt(e.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (via == "channel") {
    auto ch = e.client->channel(*e.conn, 8 << 20);
    if (!ch) return std::fprintf(stderr, "channel: %s\n", ch.failure.message.c_str()), 1;
    e.channel.emplace(std::move(*ch.value));
    e.ch = e.channel->get();
  }
  g_copyAll = o.count("--copy") && o["--copy"] == "all";
  if (!sendControl(e, cmd == "stream" ? 'S' : (g_copyAll && e.ch ? 'A' : 'E'), static_cast<std::uint32_t>(size))) return 1;
  if (cmd == "floor") {
    if (!e.ch) return std::fprintf(stderr, "floor: --via channel only\n"), 2;
    floorVsChannel(e, size, iters, std::stoi(o.count("--rounds") ? o["--rounds"] : "21"));
  } else if (cmd == "ping") report("ping", pingPong(e, size, iters), 0);
  else report("stream", {}, stream(e, size, seconds));
  return 0;
}
