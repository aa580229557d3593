// coloctl: talks to colo-node from inside a pod.
//   coloctl hello [--socket @colo|PATH] [--timeout-ms N]   prints the agent's hello reply (JSON)
// The socket defaults to $COLO_SOCKET, else @colo. Exit status: 0 ok, 1 refused, 2 unreachable.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "colo/common/wire.h"

int main(int argc, char** argv) {
  std::string socket = std::getenv("COLO_SOCKET") ? std::getenv("COLO_SOCKET") : "@colo";
  int timeoutMs = 2000;
  std::string op;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--socket" && i + 1 < argc) socket = argv[++i];
    else if (a == "--timeout-ms" && i + 1 < argc) timeoutMs = std::atoi(argv[++i]);
    else if (op.empty() && a[0] != '-') op = a;
    else {
      std::fprintf(stderr, "usage: coloctl hello [--socket @colo|PATH] [--timeout-ms N]\n");
      return 2;
    }
  }
  if (op != "hello") {
    std::fprintf(stderr, "usage: coloctl hello [--socket @colo|PATH] [--timeout-ms N]\n");
    return 2;
  }
  auto sock = colo::wire::connectUnix(socket);
  if (!sock) {
    std::fprintf(stderr, "coloctl: cannot reach colo-node at %s: %s\n", socket.c_str(), sock.error().message.c_str());
    return 2;
  }
  const nlohmann::json req = {{"v", colo::wire::kVersion}, {"id", 1}, {"op", op}};
  if (auto s = colo::wire::send(sock->get(), req); !s) {
    std::fprintf(stderr, "coloctl: %s\n", s.error().message.c_str());
    return 2;
  }
  if (auto w = colo::wire::waitReadable(sock->get(), std::chrono::milliseconds(timeoutMs)); !w) {
    std::fprintf(stderr, "coloctl: %s\n", w.error().message.c_str());
    return 2;
  }
  auto reply = colo::wire::recv(sock->get());
  if (!reply) {
    std::fprintf(stderr, "coloctl: %s\n", reply.error().message.c_str());
    return 2;
  }
  std::printf("%s\n", reply->body.dump(2).c_str());
  return reply->body.value("ok", false) ? 0 : 1;
}
