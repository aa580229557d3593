#include "colo/common/wire.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace colo::wire {
namespace {

Expected<sockaddr_un> makeAddress(const std::string& path, socklen_t& len) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return proto::error(proto::ErrorCode::InvalidArgument, "socket path empty or too long: '" + path + "'");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace, no trailing NUL
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));
  return addr;
}

}  // namespace

Status sendRaw(int sock, const void* data, std::size_t size, std::span<const int> fds, int flags) {
  if (fds.size() > kMaxFds) return proto::error(proto::ErrorCode::TooLarge, "too many descriptors");
  iovec iov{const_cast<void*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)]{};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
  while (n < 0 && errno == EINTR);
  if (n < 0) return Error::fromErrno("sendmsg");
  if (static_cast<std::size_t>(n) != size) return Error::make("io", "sendmsg sent part of a record");
  return {};
}

Expected<RawRecord> recvRaw(int sock, void* buf, std::size_t capacity, int flags) {
  iovec iov{buf, capacity};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)]{};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
  while (n < 0 && errno == EINTR);
  if (n < 0) return Error::fromErrno("recvmsg");
  RawRecord out;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      out.fds.emplace_back(fd);
    }
  }
  out.size = static_cast<std::size_t>(n);
  out.flags = msg.msg_flags;
  return out;
}

Status send(int sock, const json& body, std::span<const int> fds, bool nonBlocking) {
  const std::string data = body.dump(-1, ' ', false, json::error_handler_t::replace);
  if (data.size() > kMaxMessage) return proto::error(proto::ErrorCode::TooLarge, "message of " + std::to_string(data.size()) + " bytes exceeds 64 KiB");
  return sendRaw(sock, data.data(), data.size(), fds, nonBlocking ? MSG_DONTWAIT : 0);
}

Expected<Message> recv(int sock) {
  std::string buf(kMaxMessage + 1, '\0');
  auto raw = recvRaw(sock, buf.data(), buf.size());
  if (!raw) return raw.error();
  Message out;
  out.fds = std::move(raw->fds);  // owned from here, closed on any error below
  if (raw->size == 0 && out.fds.empty()) return Error::make("closed", "peer closed the connection");
  if ((raw->flags & MSG_TRUNC) != 0 || raw->size > kMaxMessage) return proto::error(proto::ErrorCode::TooLarge, "message exceeds 64 KiB");
  if ((raw->flags & MSG_CTRUNC) != 0) return proto::error(proto::ErrorCode::TooLarge, "too many descriptors attached");
  auto body = proto::parseMessage(std::string_view(buf.data(), raw->size));
  if (!body) return body.error();
  out.body = std::move(*body);
  return out;
}

Status waitReadable(int sock, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return proto::error(proto::ErrorCode::Timeout, "no reply within " + std::to_string(timeout.count()) + " ms");
    pollfd p{sock, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return {};
    if (r < 0 && errno != EINTR) return Error::fromErrno("poll");
  }
}

Expected<UniqueFd> connectUnix(const std::string& path, bool nonBlocking) {
  socklen_t len = 0;
  auto addr = makeAddress(path, len);
  if (!addr) return addr.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0), 0));
  if (!fd) return Error::fromErrno("socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr.value()), len) != 0) {
    if (errno == EAGAIN) return proto::error(proto::ErrorCode::Unavailable, "connect(" + path + "): the agent's backlog is full (is it hung?)", EAGAIN);
    return Error::fromErrno("connect(" + path + ")");
  }
  return fd;
}

Expected<UniqueFd> listenUnix(const std::string& path, unsigned mode) {
  socklen_t len = 0;
  auto addr = makeAddress(path, len);
  if (!addr) return addr.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::fromErrno("socket");
  const bool abstract = path[0] == '@';
  if (!abstract) ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr.value()), len) != 0) return Error::fromErrno("bind(" + path + ")");
  if (!abstract && ::chmod(path.c_str(), mode) != 0) return Error::fromErrno("chmod(" + path + ")");
  if (::listen(fd.get(), 128) != 0) return Error::fromErrno("listen(" + path + ")");
  return fd;
}

Expected<Message> call(int sock, const json& request, std::span<const int> fds, std::chrono::milliseconds timeout) {
  if (auto s = send(sock, request, fds); !s) return s.error();
  if (auto w = waitReadable(sock, timeout); !w) return w.error();
  auto reply = recv(sock);
  if (!reply) return reply.error();
  const json& body = reply->body;
  if (!body.contains("id") || body["id"] != request.value("id", json())) {
    return proto::error(proto::ErrorCode::BadRequest, "reply does not echo the request id");
  }
  if (!body.contains("ok") || !body["ok"].is_boolean()) return proto::error(proto::ErrorCode::BadRequest, "reply has no boolean 'ok'");
  return reply;
}

Status validateRequest(const json& body) {
  auto e = proto::parseEnvelope(body);
  if (!e) return e.error();
  return {};
}

}  // namespace colo::wire
