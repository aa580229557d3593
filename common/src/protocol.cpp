#include "colo/common/protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <limits>

namespace colo::proto {

std::string_view name(ErrorCode c) {
  switch (c) {
    case ErrorCode::BadRequest: return "bad_request";
    case ErrorCode::TooLarge: return "too_large";
    case ErrorCode::UnsupportedVersion: return "unsupported_version";
    case ErrorCode::UnknownOp: return "unknown_op";
    case ErrorCode::InvalidArgument: return "invalid_argument";
    case ErrorCode::BadNetns: return "bad_netns";
    case ErrorCode::NotFound: return "not_found";
    case ErrorCode::AlreadyExists: return "already_exists";
    case ErrorCode::PermissionDenied: return "permission_denied";
    case ErrorCode::Refused: return "refused";
    case ErrorCode::Timeout: return "timeout";
    case ErrorCode::Unavailable: return "unavailable";
    case ErrorCode::ResourceExhausted: return "resource_exhausted";
    case ErrorCode::Internal: return "internal";
  }
  return "internal";
}

std::optional<ErrorCode> errorCodeFrom(std::string_view s) {
  for (auto c : kAllErrorCodes) {
    if (name(c) == s) return c;
  }
  return std::nullopt;
}

ErrorCode codeOf(const Error& e) { return errorCodeFrom(e.code).value_or(ErrorCode::Internal); }

unsigned cniCode(ErrorCode c) {
  switch (c) {
    case ErrorCode::UnsupportedVersion: return 1;
    case ErrorCode::NotFound: return 3;
    case ErrorCode::BadNetns: return 4;
    case ErrorCode::TooLarge: return 5;
    case ErrorCode::BadRequest:
    case ErrorCode::InvalidArgument: return 7;
    case ErrorCode::Unavailable:
    case ErrorCode::Timeout:
    case ErrorCode::ResourceExhausted: return 11;
    case ErrorCode::UnknownOp:
    case ErrorCode::AlreadyExists:
    case ErrorCode::PermissionDenied:
    case ErrorCode::Refused:
    case ErrorCode::Internal: return 999;
  }
  return 999;
}

unsigned cniCode(std::string_view wireCode) { return cniCode(errorCodeFrom(wireCode).value_or(ErrorCode::Internal)); }

namespace {

// Deepest nesting of [ and { outside strings. Linear, no recursion: run before the JSON library
// (whose copy, dump and destruction recurse) sees the text.
std::size_t nesting(std::string_view t) {
  std::size_t depth = 0, deepest = 0;
  bool inString = false, escaped = false;
  for (char ch : t) {
    if (inString) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') inString = false;
      continue;
    }
    if (ch == '"') inString = true;
    else if (ch == '[' || ch == '{') deepest = std::max(deepest, ++depth);
    else if ((ch == ']' || ch == '}') && depth > 0) --depth;
  }
  return deepest;
}

}  // namespace

Expected<json> parseMessage(std::string_view text) {
  if (text.size() > kMaxMessage) return error(ErrorCode::TooLarge, "message exceeds 64 KiB");
  if (nesting(text) > kMaxDepth) {
    return error(ErrorCode::BadRequest, "message nests deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return error(ErrorCode::BadRequest, "message is not a JSON object");
  return j;
}

std::optional<std::int64_t> validId(const json& body) {
  if (!body.is_object()) return std::nullopt;
  auto id = body.find("id");
  if (id == body.end()) return std::nullopt;
  if (id->is_number_unsigned()) {
    // 2^63..2^64-1 parse as unsigned: outside the id range, not a negative number.
    auto u = id->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (!id->is_number_integer() || id->get<std::int64_t>() < 0) return std::nullopt;
  return id->get<std::int64_t>();
}

std::string quoteOp(std::string_view op) {
  constexpr std::size_t kShown = 64;
  if (op.size() <= kShown) return "'" + std::string(op) + "'";
  // Cut on a UTF-8 character boundary so the message stays valid JSON text.
  std::size_t cut = kShown;
  while (cut > 0 && (static_cast<unsigned char>(op[cut]) & 0xC0) == 0x80) --cut;
  return "'" + std::string(op.substr(0, cut)) + "...' (" + std::to_string(op.size()) + " bytes)";
}

Expected<Envelope> parseEnvelope(const json& body) {
  if (!body.is_object()) return error(ErrorCode::BadRequest, "request is not a JSON object");
  auto v = body.find("v");
  if (v == body.end() || !v->is_number_integer()) return error(ErrorCode::BadRequest, "request has no integer 'v'");
  if (v->get<long long>() != kVersion) {
    return error(ErrorCode::UnsupportedVersion, "protocol version " + v->dump() + " is not supported (this agent speaks 1)");
  }
  auto id = validId(body);
  if (!id) return error(ErrorCode::BadRequest, "request has no integer 'id' in 0..2^63-1");
  auto op = body.find("op");
  if (op == body.end() || !op->is_string()) return error(ErrorCode::BadRequest, "request has no string 'op'");
  return Envelope{*id, op->get<std::string>()};
}

json okReply(const json& request) {
  json r = {{"v", kVersion}, {"ok", true}, {"id", nullptr}};
  if (auto id = validId(request)) r["id"] = *id;
  return r;
}

json errorReply(const json& request, ErrorCode code, const std::string& message) {
  json r = okReply(request);
  r["ok"] = false;
  r["error"] = {{"code", name(code)}, {"message", message}};
  return r;
}

Expected<std::string> stringField(const json& obj, const char* key, std::optional<std::string> fallback, std::size_t maxLen) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (fallback) return *fallback;
    return error(ErrorCode::BadRequest, std::string("missing string '") + key + "'");
  }
  if (!it->is_string()) return error(ErrorCode::BadRequest, std::string("'") + key + "' must be a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > maxLen) return error(ErrorCode::InvalidArgument, std::string("'") + key + "' is longer than " + std::to_string(maxLen));
  return s;
}

Expected<std::uint64_t> unsignedField(const json& obj, const char* key, std::optional<std::uint64_t> fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (fallback) return *fallback;
    return error(ErrorCode::BadRequest, std::string("missing integer '") + key + "'");
  }
  if (!it->is_number_integer()) return error(ErrorCode::BadRequest, std::string("'") + key + "' must be an integer");
  if (!it->is_number_unsigned() && it->get<std::int64_t>() < 0) {
    return error(ErrorCode::InvalidArgument, std::string("'") + key + "' must not be negative");
  }
  return it->get<std::uint64_t>();
}

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isLower(char c) { return c >= 'a' && c <= 'z'; }
// Listen names, and the name part of a target: [a-z0-9.-].
bool nameChars(std::string_view n) {
  return std::all_of(n.begin(), n.end(), [](char c) { return isLower(c) || isDigit(c) || c == '-' || c == '.'; });
}
// A Kubernetes namespace or object name (DNS-1123 subdomain: dots allowed, up to 253).
bool kubeName(std::string_view n) { return !n.empty() && n.size() <= 253 && nameChars(n); }
Error invalid(std::string message) { return error(ErrorCode::InvalidArgument, std::move(message)); }

}  // namespace

std::optional<int> parsePort(std::string_view d) {
  if (d.empty() || d.size() > 5 || d[0] == '0') return std::nullopt;
  int v = 0;
  for (char c : d) {
    if (!isDigit(c)) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > 65535) return std::nullopt;
  return v;
}

Status checkName(std::string_view n) {
  if (n.substr(0, 5) == "port/") {
    if (!parsePort(n.substr(5))) return invalid("port/<n> takes a port from 1 to 65535 without leading zeros");
    return {};
  }
  if (n.empty() || n.size() > kMaxName) return invalid("a name is 1 to 63 characters");
  if (!nameChars(n)) return invalid("a name is made of a-z, 0-9, '.' and '-'");
  return {};
}

Status checkTargetText(std::string_view t) {
  if (t.empty() || t.size() > kMaxTarget) {
    return invalid("a target is 1 to " + std::to_string(kMaxTarget) + " characters, not " + std::to_string(t.size()));
  }
  for (char c : t) {
    const bool ok = isLower(c) || (c >= 'A' && c <= 'Z') || isDigit(c) || std::string_view(".-/:[]%_").find(c) != std::string_view::npos;
    if (!ok) return invalid("a target is made of letters, digits and . - / : [ ] % _");
  }
  return {};
}

namespace {

// "service/shop/cart:http", "pod/shop/cart-0:8080"
Expected<Target> parseKube(std::string_view t) {
  const auto s1 = t.find('/'), s2 = t.find('/', s1 + 1), colon = t.rfind(':');
  const auto usage = [&] {
    return invalid("dial " + std::string(t) + ": expected service/<namespace>/<name>:<port or port name> or pod/<namespace>/<name>:<port>");
  };
  if (s2 == std::string_view::npos || colon < s2) return usage();
  Target k;
  k.kind = Target::Kind::Kube;
  k.kubeKind = std::string(t.substr(0, s1));
  k.ns = std::string(t.substr(s1 + 1, s2 - s1 - 1));
  k.name = std::string(t.substr(s2 + 1, colon - s2 - 1));
  k.port = std::string(t.substr(colon + 1));
  if (!kubeName(k.ns) || k.ns.size() > kMaxName || !kubeName(k.name)) return usage();
  if (auto p = parsePort(k.port)) {
    k.portNumber = *p;
    return k;
  }
  // A Service port's name (IANA_SVC_NAME): 1 to 15 of [a-z0-9-] with at least one letter.
  const bool portName = k.kubeKind == "service" && !k.port.empty() && k.port.size() <= 15 &&
                        std::any_of(k.port.begin(), k.port.end(), isLower) &&
                        std::all_of(k.port.begin(), k.port.end(), [](char c) { return isLower(c) || isDigit(c) || c == '-'; });
  if (!portName) return usage();
  return k;
}

}  // namespace

Expected<Target> parseTarget(std::string_view t) {
  if (auto s = checkTargetText(t); !s) return s.error();
  const auto colon = t.rfind(':');
  if ((t.substr(0, 8) == "service/" || t.substr(0, 4) == "pod/") && colon != std::string_view::npos) return parseKube(t);
  if (colon != std::string_view::npos) {
    // An address: a.b.c.d:port or [ipv6]:port. No names (the agent resolves nothing) and no zones.
    Target a;
    a.kind = Target::Kind::Address;
    std::string_view host = t.substr(0, colon);
    a.port = std::string(t.substr(colon + 1));
    const auto port = parsePort(a.port);
    if (!port) return invalid("dial " + std::string(t) + ": the port is 1 to 65535 without leading zeros");
    a.portNumber = *port;
    const bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']';
    if (v6) host = host.substr(1, host.size() - 2);
    in6_addr buf{};
    const std::string h(host);
    if (::inet_pton(v6 ? AF_INET6 : AF_INET, h.c_str(), &buf) != 1) {
      return invalid("dial " + std::string(t) + ": expected ip:port or [ipv6]:port (an address, not a host name; no zone)");
    }
    a.host = h;
    return a;
  }
  // A colo name, maybe namespace-qualified. "port/<n>" is what a pod listens on, never a target
  // (a namespace named "port" would have to be dialed by bare name from inside it).
  if (t.substr(0, 5) == "port/") {
    return invalid("dial " + std::string(t) + ": port/<n> is a listen name; a pod's port/<n> is dialed as pod/<namespace>/<name>:<n>");
  }
  Target n;
  const auto slash = t.find('/');
  if (slash != std::string_view::npos) {
    n.ns = std::string(t.substr(0, slash));
    if (n.ns.empty() || n.ns.size() > kMaxName || !kubeName(n.ns)) return invalid("dial " + std::string(t) + ": a namespace is 1 to 63 of a-z, 0-9, '.' and '-'");
  }
  n.name = std::string(slash == std::string_view::npos ? t : t.substr(slash + 1));
  if (n.name.find('/') != std::string::npos) {
    return invalid("dial " + std::string(t) + ": expected <name>, <namespace>/<name>, ip:port, service/... or pod/...:<port>");
  }
  if (auto s = checkName(n.name); !s) return invalid("dial " + std::string(t) + ": " + s.error().message);
  return n;
}

Expected<ListenRequest> parseListen(const json& req) {
  auto n = stringField(req, "name", std::nullopt, kMaxName);
  if (!n) return n.error();
  if (auto s = checkName(*n); !s) return invalid("listen: " + s.error().message);
  const int port = n->rfind("port/", 0) == 0 ? *parsePort(std::string_view(*n).substr(5)) : 0;
  return ListenRequest{std::move(*n), port};
}

Expected<DialRequest> parseDial(const json& req) {
  auto t = stringField(req, "target", std::nullopt, kMaxTarget);
  if (!t) return t.error();
  if (t->empty()) return invalid("dial: missing target");
  auto parsed = parseTarget(*t);
  if (!parsed) return parsed.error();
  auto ms = unsignedField(req, "timeoutMs", 2000);
  if (!ms) return ms.error();
  return DialRequest{std::move(*t), std::move(*parsed), std::chrono::milliseconds(std::clamp<std::uint64_t>(*ms, 1, 10000))};
}

Expected<ChannelRequest> parseChannel(const json& req) {
  constexpr std::uint64_t kMin = 64 * 1024, kMax = 1ULL << 30;
  auto b = unsignedField(req, "bytes", std::nullopt);
  if (!b) return b.error();
  if (*b < kMin || *b > kMax) return error(ErrorCode::InvalidArgument, "channel: bytes must be between 64Ki and 1Gi");
  return ChannelRequest{*b};
}

void to_json(json& j, const ListenRequest& r) { j = {{"op", "listen"}, {"name", r.name}}; }
void to_json(json& j, const DialRequest& r) { j = {{"op", "dial"}, {"target", r.target}, {"timeoutMs", r.timeout.count()}}; }
void to_json(json& j, const ChannelRequest& r) { j = {{"op", "channel"}, {"bytes", r.bytes}}; }

}  // namespace colo::proto
