// Echo server: the same code serves pods on this node (a colo name: a Unix pair, upgraded to a
// shared-memory channel) and clients elsewhere (a TCP port).
// Usage: echo_server NAME [TCP_PORT] [--stall]   (--stall: take one message, never answer; tests)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "colo/colo.hpp"

namespace {

bool g_stall = false;

void echoStream(int fd) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(fd, buf + done, static_cast<std::size_t>(n - done));
      if (w <= 0) return;
      done += w;
    }
  }
}

void echoChannel(colo::Connection conn) {
  auto ch = colo::Channel::accept(conn.fd(), 2000);
  if (!ch) {
    std::printf("no channel from %s/%s: %s\n", conn.peer().ns, conn.peer().name, ch.failure.message.c_str());
    std::fflush(stdout);
    return;
  }
  std::printf("channel from %s/%s (memory %s)\n", conn.peer().ns, conn.peer().name, ch.value->memory());
  std::fflush(stdout);
  for (long n = 0;; ++n) {
    const void* in = nullptr;
    unsigned long len = 0;
    const int rc = colo_channel_read(ch.value->get(), -1, &in, &len);
    if (rc != COLO_OK) {
      std::printf("channel from %s/%s ended after %ld messages: %s\n", conn.peer().ns, conn.peer().name, n, colo_last_error());
      std::fflush(stdout);
      return;
    }
    if (g_stall) ::pause();
    void* out = nullptr;
    if (colo_channel_reserve(ch.value->get(), len, -1, &out) != COLO_OK) return;
    std::memcpy(out, in, len);
    colo_channel_release(ch.value->get());
    colo_channel_commit(ch.value->get(), len);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: echo_server NAME [TCP_PORT] [--stall]\n");
    return 2;
  }
  std::string port;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--stall") g_stall = true;
    else port = argv[i];
  }
  auto listener = colo::Listener::listen(argv[1]);
  if (!listener) {
    std::fprintf(stderr, "echo_server: listen %s: %s (%s)\n", argv[1], colo_strerror(listener.failure.status), listener.failure.message.c_str());
    return 1;
  }
  int tcp = -1;
  if (!port.empty()) {
    tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(port)));
    if (::bind(tcp, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(tcp, 64) != 0) {
      std::perror("echo_server: tcp");
      return 1;
    }
  }
  std::printf("listening on colo name %s%s\n", argv[1], tcp >= 0 ? (" and tcp port " + port).c_str() : "");
  std::fflush(stdout);
  for (;;) {
    pollfd fds[2] = {{listener.value->fd(), POLLIN, 0}, {tcp, POLLIN, 0}};
    if (::poll(fds, tcp >= 0 ? 2 : 1, -1) < 0) continue;
    // POLLHUP: colo-node went away (a restart); accept listens again and libcolo logs it.
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      auto conn = listener.value->accept(0);
      if (!conn) continue;
      std::printf("accepted unix from %s/%s\n", conn.value->peer().ns, conn.value->peer().name);
      std::fflush(stdout);
      std::thread(echoChannel, std::move(*conn.value)).detach();
    }
    if (tcp >= 0 && (fds[1].revents & POLLIN)) {
      sockaddr_in peer{};
      socklen_t len = sizeof(peer);
      const int c = ::accept4(tcp, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
      if (c < 0) continue;
      char ip[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
      std::printf("accepted tcp from %s\n", ip);
      std::fflush(stdout);
      std::thread([c] {
        echoStream(c);
        ::close(c);
      }).detach();
    }
  }
}
