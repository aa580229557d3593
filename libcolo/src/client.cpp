// libcolo's implementation over the colo wire protocol. Every entry point catches everything:
// no exception crosses the C ABI.
#include <poll.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "colo/colo.h"
#include "colo/common/wire.h"

struct colo_client {
  colo::UniqueFd sock;
  unsigned nextId = 1;
};

struct colo_listener {
  colo::UniqueFd sock;
  std::string name;
};

namespace {
thread_local std::string g_lastError;
thread_local std::string g_lastRoute;
}

namespace colo::detail {
int fail(int status, std::string message) {
  g_lastError = std::move(message);
  return status;
}
}  // namespace colo::detail

namespace {
using colo::detail::fail;

int statusFor(const std::string& code) {
  if (code == "not_found") return COLO_E_NOT_FOUND;
  if (code == "permission_denied") return COLO_E_DENIED;
  if (code == "refused") return COLO_E_REFUSED;
  if (code == "timeout") return COLO_E_TIMEOUT;
  if (code == "invalid_argument" || code == "bad_request") return COLO_E_INVALID;
  if (code == "already_exists") return COLO_E_EXISTS;
  if (code == "unavailable") return COLO_E_UNAVAILABLE;
  return COLO_E_INTERNAL;
}

std::string agentPath() {
  const char* env = std::getenv("COLO_SOCKET");
  return env && *env ? env : "@colo";
}

void copy(char* dst, std::size_t n, const nlohmann::json& j, const char* key) {
  const std::string v = j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
  std::snprintf(dst, n, "%s", v.c_str());
}

void fillIdentity(colo_identity* id, const nlohmann::json& j) {
  copy(id->ns, sizeof(id->ns), j, "namespace");
  copy(id->name, sizeof(id->name), j, "name");
  copy(id->uid, sizeof(id->uid), j, "uid");
  copy(id->node, sizeof(id->node), j, "node");
}

// One request, one reply, with the descriptors that came along.
int roundTrip(int sock, unsigned id, nlohmann::json req, int timeoutMs, colo::wire::Message& out) {
  req["v"] = colo::wire::kVersion;
  req["id"] = id;
  auto r = colo::wire::call(sock, req, {}, std::chrono::milliseconds(timeoutMs));
  if (!r) return fail(r.error().code == "timeout" ? COLO_E_TIMEOUT : COLO_E_PROTOCOL, r.error().message);
  out = std::move(r.value());
  if (!out.body["ok"].get<bool>()) {
    const auto& e = out.body.value("error", nlohmann::json::object());
    return fail(statusFor(e.value("code", "")), e.value("message", "agent refused"));
  }
  return COLO_OK;
}

int connectAgent(colo::UniqueFd& out) {
  auto s = colo::wire::connectUnix(agentPath());
  if (!s) return fail(COLO_E_UNREACHABLE, "cannot reach colo-node at " + agentPath() + ": " + s.error().message);
  out = std::move(s.value());
  return COLO_OK;
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
  *out = colo_identity{};
  fillIdentity(out, m.body["identity"]);
  return COLO_OK;
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_whoami");
}

int colo_dial(colo_client* c, const char* target, int timeout_ms, colo_conn* out) try {
  if (!c || !target || !out) return fail(COLO_E_INVALID, "NULL argument");
  const int t = timeout_ms > 0 ? timeout_ms : 2000;
  colo::wire::Message m;
  // The agent's own wait is bounded by timeoutMs; give the reply a little more.
  if (int rc = roundTrip(c->sock.get(), c->nextId++, {{"op", "dial"}, {"target", target}, {"timeoutMs", t}}, t + 1000, m); rc != COLO_OK) {
    return rc;
  }
  if (m.fds.size() != 1) return fail(COLO_E_PROTOCOL, "dial reply carried no socket");
  *out = colo_conn{};
  out->fd = m.fds[0].release();
  out->transport = m.body.value("transport", "") == "tcp" ? COLO_TRANSPORT_TCP : COLO_TRANSPORT_UNIX;
  fillIdentity(&out->peer, m.body.value("peer", nlohmann::json::object()));
  copy(out->address, sizeof(out->address), m.body.value("peer", nlohmann::json::object()), "address");
  const auto route = m.body.value("route", nlohmann::json::object());
  g_lastRoute = route.is_object() && route.contains("via") ? route.value("via", "") + ": " + route.value("why", "") : "";
  return COLO_OK;
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_dial");
}

int colo_listen(const char* name, colo_listener** out) try {
  if (!name || !out) return fail(COLO_E_INVALID, "NULL argument");
  auto* l = new colo_listener;
  if (int rc = connectAgent(l->sock); rc != COLO_OK) {
    delete l;
    return rc;
  }
  colo::wire::Message m;
  if (int rc = roundTrip(l->sock.get(), 1, {{"op", "listen"}, {"name", name}}, 2000, m); rc != COLO_OK) {
    delete l;
    return rc;
  }
  l->name = m.body.value("name", name);
  *out = l;
  return COLO_OK;
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_listen");
}

int colo_accept(colo_listener* l, int timeout_ms, colo_conn* out) try {
  if (!l || !out) return fail(COLO_E_INVALID, "NULL argument");
  pollfd p{l->sock.get(), POLLIN, 0};
  const int r = ::poll(&p, 1, timeout_ms);
  if (r == 0) return fail(COLO_E_TIMEOUT, "no incoming connection within " + std::to_string(timeout_ms) + " ms");
  if (r < 0) return fail(COLO_E_INTERNAL, std::string("poll: ") + std::strerror(errno));
  auto m = colo::wire::recv(l->sock.get());
  if (!m) return fail(m.error().code == "closed" ? COLO_E_UNREACHABLE : COLO_E_PROTOCOL, "listener: " + m.error().message);
  if (m->body.value("event", "") != "incoming" || m->fds.size() != 1) return fail(COLO_E_PROTOCOL, "listener: unexpected message");
  *out = colo_conn{};
  out->fd = m->fds[0].release();
  out->transport = COLO_TRANSPORT_UNIX;
  fillIdentity(&out->peer, m->body["peer"]);
  return COLO_OK;
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_accept");
}

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
