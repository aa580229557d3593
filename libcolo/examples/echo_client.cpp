// Echo client: dials TARGET through colo-node and checks the echo. The same code works whether the
// server is on this node (a name: Unix socket) or not (ip:port: TCP from this pod's netns).
// Usage: echo_client TARGET [MESSAGE]
#include <unistd.h>

#include <cstdio>
#include <string>

#include "colo/colo.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: echo_client TARGET [MESSAGE]\n");
    return 2;
  }
  const std::string message = argc > 2 ? argv[2] : "hello through colo";
  auto client = colo::Client::open();
  if (!client) {
    std::fprintf(stderr, "echo_client: %s\n", client.failure.message.c_str());
    return 2;
  }
  auto conn = client.value->dial(argv[1]);
  if (!conn) {
    std::fprintf(stderr, "echo_client: dial %s: %s (%s)\n", argv[1], colo_strerror(conn.failure.status), conn.failure.message.c_str());
    return 1;
  }
  if (conn.value->isUnix()) std::printf("transport unix, peer %s/%s\n", conn.value->peer().ns, conn.value->peer().name);
  else std::printf("transport tcp, peer %s\n", conn.value->address().c_str());
  if (::write(conn.value->fd(), message.data(), message.size()) != static_cast<ssize_t>(message.size())) return 1;
  std::string back(message.size(), '\0');
  std::size_t got = 0;
  while (got < back.size()) {
    const ssize_t n = ::read(conn.value->fd(), back.data() + got, back.size() - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (back != message) {
    std::fprintf(stderr, "echo_client: echo mismatch\n");
    return 1;
  }
  std::printf("echo ok: %s\n", back.c_str());
  return 0;
}
