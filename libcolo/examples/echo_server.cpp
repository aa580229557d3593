// Echo server: the same code serves pods on this node (a colo name, Unix sockets) and clients
// elsewhere (a TCP port). Usage: echo_server NAME [TCP_PORT]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "colo/colo.hpp"

namespace {

void echo(int fd) {
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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: echo_server NAME [TCP_PORT]\n");
    return 2;
  }
  auto listener = colo::Listener::listen(argv[1]);
  if (!listener) {
    std::fprintf(stderr, "echo_server: listen %s: %s (%s)\n", argv[1], colo_strerror(listener.failure.status), listener.failure.message.c_str());
    return 1;
  }
  int tcp = -1;
  if (argc > 2) {
    tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(argv[2])));
    if (::bind(tcp, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(tcp, 64) != 0) {
      std::perror("echo_server: tcp");
      return 1;
    }
  }
  std::printf("listening on colo name %s%s\n", argv[1], tcp >= 0 ? (" and tcp port " + std::string(argv[2])).c_str() : "");
  std::fflush(stdout);
  for (;;) {
    pollfd fds[2] = {{listener.value->fd(), POLLIN, 0}, {tcp, POLLIN, 0}};
    if (::poll(fds, tcp >= 0 ? 2 : 1, -1) < 0) continue;
    if (fds[0].revents & (POLLHUP | POLLERR)) {
      std::fprintf(stderr, "echo_server: colo-node went away\n");
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      auto conn = listener.value->accept(0);
      if (!conn) continue;
      std::printf("accepted unix from %s/%s\n", conn.value->peer().ns, conn.value->peer().name);
      std::fflush(stdout);
      std::thread([c = std::move(*conn.value)]() mutable { echo(c.fd()); }).detach();
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
        echo(c);
        ::close(c);
      }).detach();
    }
  }
}
