// Echo client: dials TARGET through colo-node and checks COUNT echoes. The same code works whether
// the server is on this node (a name: a Unix pair, upgraded to a shared-memory channel) or not
// (ip:port: TCP from this pod's netns). Prints which transport it got.
// Usage: echo_client TARGET [MESSAGE] [--count N] [--channel-bytes B]
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "colo/colo.hpp"

namespace {

bool streamRoundTrip(int fd, const std::string& message) {
  if (::write(fd, message.data(), message.size()) != static_cast<ssize_t>(message.size())) return false;
  std::string back(message.size(), '\0');
  std::size_t got = 0;
  while (got < back.size()) {
    const ssize_t n = ::read(fd, back.data() + got, back.size() - got);
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return back == message;
}

bool channelRoundTrip(colo_channel* ch, const std::string& message, std::string& err) {
  void* out = nullptr;
  if (colo_channel_reserve(ch, message.size(), 5000, &out) != COLO_OK) return err = colo_last_error(), false;
  std::memcpy(out, message.data(), message.size());
  colo_channel_commit(ch, message.size());
  const void* in = nullptr;
  unsigned long len = 0;
  if (colo_channel_read(ch, 5000, &in, &len) != COLO_OK) return err = colo_last_error(), false;
  const bool same = len == message.size() && std::memcmp(in, message.data(), len) == 0;
  colo_channel_release(ch);
  if (!same) err = "echo mismatch";
  return same;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: echo_client TARGET [MESSAGE] [--count N] [--channel-bytes B]\n");
    return 2;
  }
  std::string message = "hello through colo";
  long count = 1;
  unsigned long long channelBytes = 1 << 20;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--count" && i + 1 < argc) count = std::stol(argv[++i]);
    else if (a == "--channel-bytes" && i + 1 < argc) channelBytes = std::stoull(argv[++i]);
    else message = a;
  }
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
  if (*colo_last_route()) std::printf("route %s\n", colo_last_route());
  if (!conn.value->isUnix()) {
    std::printf("transport tcp, peer %s\n", conn.value->address().c_str());
    for (long i = 0; i < count; ++i) {
      if (!streamRoundTrip(conn.value->fd(), message)) {
        std::fprintf(stderr, "echo_client: echo failed\n");
        return 1;
      }
    }
    std::printf("echo ok: %s (x%ld)\n", message.c_str(), count);
    return 0;
  }
  auto ch = client.value->channel(*conn.value, channelBytes);
  if (!ch) {
    std::fprintf(stderr, "echo_client: channel: %s\n", ch.failure.message.c_str());
    return 1;
  }
  std::printf("transport unix, peer %s/%s, then channel (memory %s)\n", conn.value->peer().ns, conn.value->peer().name, ch.value->memory());
  std::fflush(stdout);
  std::string err;
  for (long i = 0; i < count; ++i) {
    if (!channelRoundTrip(ch.value->get(), message, err)) {
      std::fprintf(stderr, "echo_client: channel echo %ld failed: %s\n", i, err.c_str());
      return 1;
    }
  }
  std::printf("echo ok: %s (x%ld)\n", message.c_str(), count);
  return 0;
}
