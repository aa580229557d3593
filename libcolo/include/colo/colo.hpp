// C++ over libcolo's C API: RAII for clients, listeners and connections; errors as values.
#pragma once

#include <unistd.h>

#include <optional>
#include <string>
#include <utility>

#include "colo/colo.h"

namespace colo {

struct Failure {
  int status;
  std::string message;
};

class Connection {
 public:
  explicit Connection(colo_conn c) : c_(c) {}
  Connection(Connection&& o) noexcept : c_(o.c_) { o.c_.fd = -1; }
  Connection& operator=(Connection&& o) noexcept {
    std::swap(c_, o.c_);
    return *this;
  }
  ~Connection() {
    if (c_.fd >= 0) ::close(c_.fd);
  }
  int fd() const { return c_.fd; }
  bool isUnix() const { return c_.transport == COLO_TRANSPORT_UNIX; }
  const colo_identity& peer() const { return c_.peer; }
  std::string address() const { return c_.address; }

 private:
  colo_conn c_;
};

template <class T>
struct Result {
  std::optional<T> value;
  Failure failure{COLO_OK, {}};
  explicit operator bool() const { return value.has_value(); }
};

// A shared-memory channel on a dialed pair (see colo.h).
class Channel {
 public:
  explicit Channel(colo_channel* ch) : ch_(ch) {}
  Channel(Channel&& o) noexcept : ch_(std::exchange(o.ch_, nullptr)) {}
  ~Channel() { colo_channel_close(ch_); }
  colo_channel* get() const { return ch_; }
  const char* memory() const { return colo_channel_memory(ch_); }
  static Result<Channel> accept(int pairFd, int timeoutMs) {
    colo_channel* ch = nullptr;
    const int rc = colo_channel_accept(pairFd, timeoutMs, &ch);
    if (rc != COLO_OK) return {std::nullopt, {rc, colo_last_error()}};
    return {Channel(ch), {}};
  }

 private:
  colo_channel* ch_;
};

class Client {
 public:
  static Result<Client> open() {
    colo_client* c = nullptr;
    const int rc = colo_open(&c);
    if (rc != COLO_OK) return {std::nullopt, {rc, colo_last_error()}};
    return {Client(c), {}};
  }
  Client(Client&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  ~Client() { colo_close(c_); }
  Result<colo_identity> whoami() {
    colo_identity id{};
    const int rc = colo_whoami(c_, &id);
    if (rc != COLO_OK) return {std::nullopt, {rc, colo_last_error()}};
    return {id, {}};
  }
  Result<Channel> channel(const Connection& conn, unsigned long long bytes) {
    colo_channel* ch = nullptr;
    const int rc = colo_channel_open(c_, conn.fd(), bytes, &ch);
    if (rc != COLO_OK) return {std::nullopt, {rc, colo_last_error()}};
    return {Channel(ch), {}};
  }
  Result<Connection> dial(const std::string& target, int timeoutMs = 2000) {
    colo_conn conn{};
    const int rc = colo_dial(c_, target.c_str(), timeoutMs, &conn);
    if (rc != COLO_OK) return {std::nullopt, {rc, colo_last_error()}};
    return {Connection(conn), {}};
  }

 private:
  explicit Client(colo_client* c) : c_(c) {}
  colo_client* c_;
};

class Listener {
 public:
  static Result<Listener> listen(const std::string& name) {
    colo_listener* l = nullptr;
    const int rc = colo_listen(name.c_str(), &l);
    if (rc != COLO_OK) return {std::nullopt, {rc, colo_last_error()}};
    return {Listener(l), {}};
  }
  Listener(Listener&& o) noexcept : l_(std::exchange(o.l_, nullptr)) {}
  ~Listener() { colo_listener_close(l_); }
  int fd() const { return colo_listener_fd(l_); }
  Result<Connection> accept(int timeoutMs = -1) {
    colo_conn conn{};
    const int rc = colo_accept(l_, timeoutMs, &conn);
    if (rc != COLO_OK) return {std::nullopt, {rc, colo_last_error()}};
    return {Connection(conn), {}};
  }

 private:
  explicit Listener(colo_listener* l) : l_(l) {}
  colo_listener* l_;
};

}  // namespace colo
