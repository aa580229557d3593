// The Unix socket reference for the datapath benchmark: one AF_UNIX stream pair, the other end in
// a forked process.
//   colo-bench-unix stream SECONDS     single-stream throughput, 128 KiB writes -> "Gbit/s"
//   colo-bench-unix pingpong COUNT     64-byte ping-pong, both ends on CPU 0 -> "p50_us p99_us"
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

void pinToCpu0() {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  ::sched_setaffinity(0, sizeof(set), &set);
}

bool readFull(int fd, char* p, std::size_t n) {
  while (n) {
    const ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: colo-bench-unix stream SECONDS | pingpong COUNT\n");
    return 2;
  }
  const std::string mode = argv[1];
  const long arg = std::stol(argv[2]);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 1;
  if (mode == "pingpong") pinToCpu0();
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(sv[0]);
    std::vector<char> buf(128 * 1024);
    if (mode == "stream") {
      while (::read(sv[1], buf.data(), buf.size()) > 0) {
      }
    } else {
      while (readFull(sv[1], buf.data(), 64) && ::write(sv[1], buf.data(), 64) == 64) {
      }
    }
    ::_exit(0);
  }
  ::close(sv[1]);
  std::vector<char> buf(128 * 1024, 'x');
  if (mode == "stream") {
    const auto end = Clock::now() + std::chrono::seconds(arg);
    const auto t0 = Clock::now();
    std::uint64_t bytes = 0;
    while (Clock::now() < end) {
      const ssize_t w = ::write(sv[0], buf.data(), buf.size());
      if (w <= 0) break;
      bytes += static_cast<std::uint64_t>(w);
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("%.2f\n", static_cast<double>(bytes) * 8 / secs / 1e9);
  } else {
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(arg));
    for (long i = 0; i < arg; ++i) {
      const auto t0 = Clock::now();
      if (::write(sv[0], buf.data(), 64) != 64 || !readFull(sv[0], buf.data(), 64)) break;
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / 2);  // one-way, like sockperf
    }
    std::sort(us.begin(), us.end());
    std::printf("%.3f %.3f\n", us[us.size() / 2], us[us.size() * 99 / 100]);
  }
  ::close(sv[0]);
  ::waitpid(child, nullptr, 0);
  return 0;
}
