#include "colo/common/protocol.h"

#include <algorithm>

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

Expected<Envelope> parseEnvelope(const json& body) {
  if (!body.is_object()) return error(ErrorCode::BadRequest, "request is not a JSON object");
  auto v = body.find("v");
  if (v == body.end() || !v->is_number_integer()) return error(ErrorCode::BadRequest, "request has no integer 'v'");
  if (v->get<long long>() != kVersion) {
    return error(ErrorCode::UnsupportedVersion, "protocol version " + v->dump() + " is not supported (this agent speaks 1)");
  }
  auto id = body.find("id");
  if (id == body.end() || !id->is_number_integer() || id->get<long long>() < 0) {
    return error(ErrorCode::BadRequest, "request has no non-negative integer 'id'");
  }
  auto op = body.find("op");
  if (op == body.end() || !op->is_string()) return error(ErrorCode::BadRequest, "request has no string 'op'");
  return Envelope{id->get<std::int64_t>(), op->get<std::string>()};
}

json okReply(const json& request) {
  json r = {{"v", kVersion}, {"ok", true}, {"id", nullptr}};
  if (request.is_object()) {
    if (auto id = request.find("id"); id != request.end() && id->is_number_integer()) r["id"] = *id;
  }
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
bool validName(const std::string& n) {
  return !n.empty() && n.size() <= 63 && std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}
}  // namespace

Expected<ListenRequest> parseListen(const json& req) {
  auto n = stringField(req, "name", std::nullopt, 63);
  if (!n) return n.error();
  if (n->rfind("port/", 0) == 0) {
    const std::string digits = n->substr(5);
    const bool numeric = !digits.empty() && digits.size() <= 5 && std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    const int port = numeric ? std::stoi(digits) : 0;
    if (port < 1 || port > 65535) return error(ErrorCode::InvalidArgument, "listen: port/<n> takes a port from 1 to 65535");
    return ListenRequest{std::move(*n), port};
  }
  if (!validName(*n)) return error(ErrorCode::InvalidArgument, "listen: name must be 1..63 of [a-z0-9.-], or port/<n>");
  return ListenRequest{std::move(*n), 0};
}

Expected<DialRequest> parseDial(const json& req) {
  auto t = stringField(req, "target", std::nullopt, 300);
  if (!t) return t.error();
  if (t->empty()) return error(ErrorCode::InvalidArgument, "dial: missing target");
  auto ms = unsignedField(req, "timeoutMs", 2000);
  if (!ms) return ms.error();
  return DialRequest{std::move(*t), std::chrono::milliseconds(std::clamp<std::uint64_t>(*ms, 1, 10000))};
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
