// libcolo's implementation over the colo wire protocol. Every entry point catches everything:
// no exception crosses the C ABI.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <cstring>
#include <string>

#include "colo/colo.h"
#include "colo/common/protocol.h"
#include "colo/common/replies.h"
#include "colo/common/wire.h"

struct colo_client {
  colo::UniqueFd sock;
  unsigned nextId = 1;
};

struct colo_listener {
  colo::UniqueFd sock;
  std::string name;       // as registered: "namespace/name"
  std::string requested;  // as asked for: registered again after an agent restart
  int backoffMs = 0;      // 0 while connected; grows 50 ms..2 s while colo-node is away
};

namespace {
thread_local std::string g_lastError;
thread_local std::string g_lastRoute;
std::atomic<colo_log_fn> g_log{nullptr};

void logLine(const std::string& line) {
  if (colo_log_fn fn = g_log.load()) {
    fn(line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}
}

namespace colo::detail {
int fail(int status, std::string message) {
  g_lastError = std::move(message);
  return status;
}
}  // namespace colo::detail

namespace {
using colo::detail::fail;

int statusFor(colo::proto::ErrorCode code) {
  using colo::proto::ErrorCode;
  switch (code) {
    case ErrorCode::NotFound: return COLO_E_NOT_FOUND;
    case ErrorCode::PermissionDenied: return COLO_E_DENIED;
    case ErrorCode::Refused: return COLO_E_REFUSED;
    case ErrorCode::Timeout: return COLO_E_TIMEOUT;
    case ErrorCode::InvalidArgument:
    case ErrorCode::BadRequest: return COLO_E_INVALID;
    case ErrorCode::AlreadyExists: return COLO_E_EXISTS;
    case ErrorCode::Unavailable:
    case ErrorCode::ResourceExhausted: return COLO_E_UNAVAILABLE;
    default: return COLO_E_INTERNAL;
  }
}

std::string agentPath() {
  const char* env = std::getenv("COLO_SOCKET");
  return env && *env ? env : "@colo";
}

void copy(char* dst, std::size_t n, const std::string& v) { std::snprintf(dst, n, "%s", v.c_str()); }

void fillIdentity(colo_identity* id, const colo::proto::PodIdentity& p, const std::string& node) {
  copy(id->ns, sizeof(id->ns), p.ns);
  copy(id->name, sizeof(id->name), p.name);
  copy(id->uid, sizeof(id->uid), p.uid);
  copy(id->node, sizeof(id->node), node);
}

// A reply or event that does not parse: the agent broke the protocol.
int protocolError(const colo::Error& e) { return fail(COLO_E_PROTOCOL, "colo-node's reply: " + e.message); }

// One request, one reply, with the descriptors that came along.
int roundTrip(int sock, unsigned id, nlohmann::json req, int timeoutMs, colo::wire::Message& out) {
  req["v"] = colo::wire::kVersion;
  req["id"] = id;
  auto r = colo::wire::call(sock, req, {}, std::chrono::milliseconds(timeoutMs));
  if (!r) return fail(r.error().code == "timeout" ? COLO_E_TIMEOUT : COLO_E_PROTOCOL, r.error().message);
  out = std::move(r.value());
  auto head = colo::proto::parseReplyHead(out.body);
  if (!head) return protocolError(head.error());
  if (!head->ok) return fail(statusFor(head->error.code), head->error.message);
  return COLO_OK;
}

int connectAgent(colo::UniqueFd& out) {
  auto s = colo::wire::connectUnix(agentPath());
  if (!s) return fail(COLO_E_UNREACHABLE, "cannot reach colo-node at " + agentPath() + ": " + s.error().message);
  out = std::move(s.value());
  return COLO_OK;
}

// Checked before sending, with the check colo-node makes (colo/common/protocol.h; the Go and
// Python clients make the same one), so every client gives invalid for the same bad input
// (sizes, characters, port/<n> with leading zeros).
int checkName(std::string_view name) {
  auto s = colo::proto::checkName(name);
  return s ? COLO_OK : fail(COLO_E_INVALID, s.error().message);
}

int checkTarget(std::string_view t) {
  auto s = colo::proto::checkTargetText(t);
  return s ? COLO_OK : fail(COLO_E_INVALID, s.error().message);
}

// A new agent connection holding the listener's name.
int registerName(const std::string& name, colo::UniqueFd& sock, std::string& registered) {
  if (int rc = connectAgent(sock); rc != COLO_OK) return rc;
  colo::wire::Message m;
  if (int rc = roundTrip(sock.get(), 1, colo::proto::ListenRequest{.name = name, .port = 0}, 2000, m); rc != COLO_OK) return rc;
  auto r = colo::proto::parseListenReply(m.body);
  if (!r) return protocolError(r.error());
  registered = std::move(r->name);
  return COLO_OK;
}

// colo-node went away under a listener: register the name again on a new connection, put in
// place of the old one under the same fd number. At least one attempt; between attempts the
// back-off (50 ms doubling to 2 s), within the caller's deadline when it has one.
int relisten(colo_listener* l, int timeoutMs) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs < 0 ? 0 : timeoutMs);
  if (l->backoffMs == 0) logLine("colo: listener " + l->name + ": colo-node went away; listening again when it is back");
  for (;;) {
    colo::UniqueFd fresh;
    std::string registered;
    if (registerName(l->requested, fresh, registered) == COLO_OK) {
      if (::dup3(fresh.get(), l->sock.get(), O_CLOEXEC) < 0) return fail(COLO_E_INTERNAL, std::string("dup3: ") + std::strerror(errno));
      l->backoffMs = 0;
      logLine("colo: listener " + l->name + ": colo-node is back; listening again");
      return COLO_OK;
    }
    l->backoffMs = l->backoffMs == 0 ? 50 : std::min(l->backoffMs * 2, 2000);
    auto pause = std::chrono::milliseconds(l->backoffMs);
    if (timeoutMs >= 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      pause = std::clamp(left, std::chrono::milliseconds(50), pause);
    }
    std::this_thread::sleep_for(pause);
    if (timeoutMs >= 0 && Clock::now() >= deadline) return fail(COLO_E_TIMEOUT, "colo-node not back yet");
  }
}

}  // namespace

namespace colo::detail {
int clientRoundTrip(colo_client* c, nlohmann::json req, int timeoutMs, wire::Message& out) {
  return roundTrip(c->sock.get(), c->nextId++, std::move(req), timeoutMs, out);
}
}  // namespace colo::detail

extern "C" {

int colo_open(colo_client** out) try {
  if (!out) return fail(COLO_E_INVALID, "out is NULL");
  auto* c = new colo_client;
  if (int rc = connectAgent(c->sock); rc != COLO_OK) {
    delete c;
    return rc;
  }
  *out = c;
  return COLO_OK;
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_open");
}

void colo_close(colo_client* c) { delete c; }

int colo_whoami(colo_client* c, colo_identity* out) try {
  if (!c || !out) return fail(COLO_E_INVALID, "NULL argument");
  colo::wire::Message m;
  if (int rc = roundTrip(c->sock.get(), c->nextId++, {{"op", "hello"}}, 2000, m); rc != COLO_OK) return rc;
  auto r = colo::proto::parseHelloReply(m.body);
  if (!r) return protocolError(r.error());
  *out = colo_identity{};
  fillIdentity(out, r->identity, r->node);
  return COLO_OK;
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_whoami");
}

int colo_dial(colo_client* c, const char* target, int timeout_ms, colo_conn* out) try {
  if (!c || !target || !out) return fail(COLO_E_INVALID, "NULL argument");
  if (int rc = checkTarget(target); rc != COLO_OK) return rc;
  const int t = timeout_ms > 0 ? timeout_ms : 2000;
  colo::wire::Message m;
  // The agent's own wait is bounded by timeoutMs; give the reply a little more.
  colo::proto::DialRequest req;
  req.target = target;
  req.timeout = std::chrono::milliseconds(t);
  if (int rc = roundTrip(c->sock.get(), c->nextId++, req, t + 1000, m); rc != COLO_OK) {
    return rc;
  }
  auto r = colo::proto::parseDialReply(m.body);
  if (!r) return protocolError(r.error());
  if (m.fds.size() != 1) return fail(COLO_E_PROTOCOL, "dial reply carried no socket");
  *out = colo_conn{};
  out->fd = m.fds[0].release();
  out->transport = r->transport == colo::proto::Transport::Tcp ? COLO_TRANSPORT_TCP : COLO_TRANSPORT_UNIX;
  fillIdentity(&out->peer, r->peer, "");
  copy(out->address, sizeof(out->address), r->address);
  g_lastRoute = r->route ? r->route->via + ": " + r->route->why : "";
  return COLO_OK;
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_dial");
}

int colo_listen(const char* name, colo_listener** out) try {
  if (!name || !out) return fail(COLO_E_INVALID, "NULL argument");
  if (int rc = checkName(name); rc != COLO_OK) return rc;
  auto* l = new colo_listener;
  l->requested = name;
  if (int rc = registerName(l->requested, l->sock, l->name); rc != COLO_OK) {
    delete l;
    return rc;
  }
  *out = l;
  return COLO_OK;
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_listen");
}

int colo_accept(colo_listener* l, int timeout_ms, colo_conn* out) try {
  if (!l || !out) return fail(COLO_E_INVALID, "NULL argument");
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  auto left = [&] {
    if (timeout_ms < 0) return -1;
    return static_cast<int>(std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
  };
  for (;;) {
    pollfd p{l->sock.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, left());
    if (r == 0) return fail(COLO_E_TIMEOUT, "no incoming connection within " + std::to_string(timeout_ms) + " ms");
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail(COLO_E_INTERNAL, std::string("poll: ") + std::strerror(errno));
    }
    auto m = colo::wire::recv(l->sock.get());
    if (!m) {
      if (m.error().code != "closed" && m.error().errnum != ECONNRESET) return fail(COLO_E_PROTOCOL, "listener: " + m.error().message);
      // colo-node went away (restart, upgrade): listen again, then go on waiting.
      if (int rc = relisten(l, left()); rc != COLO_OK) return rc;
      continue;
    }
    if (colo::proto::eventOf(m->body) != "incoming") continue;  // not for us: skip it
    auto ev = colo::proto::parseIncomingEvent(m->body);
    if (!ev) return protocolError(ev.error());
    if (m->fds.size() != 1) return fail(COLO_E_PROTOCOL, "incoming event carried no socket");
    *out = colo_conn{};
    out->fd = m->fds[0].release();
    out->transport = COLO_TRANSPORT_UNIX;
    fillIdentity(&out->peer, ev->peer, "");
    return COLO_OK;
  }
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_accept");
}

void colo_set_log(colo_log_fn fn) { g_log.store(fn); }

int colo_listener_fd(const colo_listener* l) { return l ? l->sock.get() : -1; }

void colo_listener_close(colo_listener* l) { delete l; }

const char* colo_strerror(int status) {
  switch (status) {
    case COLO_OK: return "ok";
    case COLO_E_UNREACHABLE: return "colo-node unreachable";
    case COLO_E_PROTOCOL: return "protocol error";
    case COLO_E_NOT_FOUND: return "not found";
    case COLO_E_DENIED: return "permission denied";
    case COLO_E_REFUSED: return "connection refused";
    case COLO_E_TIMEOUT: return "timed out";
    case COLO_E_INVALID: return "invalid argument";
    case COLO_E_EXISTS: return "already exists";
    case COLO_E_UNAVAILABLE: return "unavailable";
    default: return "internal error";
  }
}

const char* colo_last_error(void) { return g_lastError.c_str(); }
const char* colo_last_route(void) { return g_lastRoute.c_str(); }

}  // extern "C"
