// The colo wire protocol's typed definition, shared by colo-cni, colo-node and libcolo: error
// codes (with the one mapping to CNI codes), parse limits, the request envelope and the pod
// endpoint's requests. Parsing never throws: a missing or wrong-typed field is `bad_request`,
// a well-typed but unacceptable value is `invalid_argument`. See docs/protocol.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "colo/common/error.h"

namespace colo::proto {

using json = nlohmann::json;

enum class ErrorCode {
  BadRequest,          // not JSON, not an object, too deep, a field missing or of the wrong type
  TooLarge,            // over kMaxMessage bytes or kMaxFds descriptors
  UnsupportedVersion,  // "v" is not kVersion
  UnknownOp,           // no such operation on this socket
  InvalidArgument,     // well-formed but unacceptable
  BadNetns,            // descriptor missing or not a network namespace
  NotFound,            // nothing held / registered under that name
  AlreadyExists,       // a name taken by another listener
  PermissionDenied,    // policy, or a caller outside the pod's netns
  Refused,             // a TCP dial was refused by the peer
  Timeout,             // a deadline passed (a dial, a late CNI request)
  Unavailable,         // try again later (agent busy, listener not accepting)
  ResourceExhausted,   // a cap: the pod's own share (connections, names, work, memory) or the node's hugepage budget
  Internal,            // a bug; the message says what
};

inline constexpr ErrorCode kAllErrorCodes[] = {
    ErrorCode::BadRequest,   ErrorCode::TooLarge,         ErrorCode::UnsupportedVersion, ErrorCode::UnknownOp,
    ErrorCode::InvalidArgument, ErrorCode::BadNetns,      ErrorCode::NotFound,           ErrorCode::AlreadyExists,
    ErrorCode::PermissionDenied, ErrorCode::Refused,      ErrorCode::Timeout,            ErrorCode::Unavailable,
    ErrorCode::ResourceExhausted, ErrorCode::Internal};

// The code's string on the wire ("bad_request", ...).
[[nodiscard]] std::string_view name(ErrorCode c);
// The code for a wire string; an unknown string (a newer agent) is nullopt: callers treat it as Internal.
[[nodiscard]] std::optional<ErrorCode> errorCodeFrom(std::string_view s);
// The one mapping to CNI spec error codes (1 incompatible version, 3 unknown container,
// 4 invalid environment, 5 I/O, 7 invalid config, 11 try again later, 999 internal).
[[nodiscard]] unsigned cniCode(ErrorCode c);
[[nodiscard]] unsigned cniCode(std::string_view wireCode);

// Limits applied at parse, before any handler sees a message.
inline constexpr int kVersion = 1;
inline constexpr std::size_t kMaxMessage = 64 * 1024;
inline constexpr std::size_t kMaxFds = 8;
inline constexpr std::size_t kMaxDepth = 32;  // nesting of arrays and objects

// Parses one message: at most kMaxMessage bytes, nesting at most kMaxDepth (checked before the
// JSON library recurses anywhere), a JSON object. Errors are TooLarge or BadRequest.
[[nodiscard]] Expected<json> parseMessage(std::string_view text);

// Every request: {"v": 1, "id": <integer 0..2^63-1>, "op": "<string>"}.
struct Envelope {
  std::int64_t id = 0;
  std::string op;
};
[[nodiscard]] Expected<Envelope> parseEnvelope(const json& body);

// The request's id when it is an integer in 0..2^63-1 (the range parseEnvelope takes).
[[nodiscard]] std::optional<std::int64_t> validId(const json& body);

// An op for an error message: quoted, cut to 64 bytes + "..." so that a huge unknown op still
// gets a reply under kMaxMessage.
[[nodiscard]] std::string quoteOp(std::string_view op);

// Replies. The id is copied only when validId accepts it; anything else (an id the request was
// refused for) answers with "id": null.
[[nodiscard]] json okReply(const json& request);
[[nodiscard]] json errorReply(const json& request, ErrorCode code, const std::string& message);

// The wire code an Error carries; one that is not a wire code (a local "io") is Internal.
[[nodiscard]] ErrorCode codeOf(const Error& e);

// An Error whose code is a wire code (the agent's handlers carry them through colo::Error).
[[nodiscard]] inline Error error(ErrorCode c, std::string message, int errnum = 0) { return Error{std::string(name(c)), std::move(message), errnum}; }

// Typed field access: a missing field is `fallback`, a wrong-typed one BadRequest.
[[nodiscard]] Expected<std::string> stringField(const json& obj, const char* key, std::optional<std::string> fallback, std::size_t maxLen);
[[nodiscard]] Expected<std::uint64_t> unsignedField(const json& obj, const char* key, std::optional<std::uint64_t> fallback);

// Names and dial targets: the one check colo-node and libcolo make (the Go and Python clients
// make the same one), so that every side says invalid_argument for the same bad input.
inline constexpr std::size_t kMaxName = 63;
inline constexpr std::size_t kMaxTarget = 512;  // pod/<63>/<253>:<65535> is the longest meaningful target
// A port written as clients write it: 1..65535, digits only, no leading zero; nullopt otherwise.
[[nodiscard]] std::optional<int> parsePort(std::string_view digits);
// A listen name: 1..63 of [a-z0-9.-], or "port/<n>". InvalidArgument otherwise.
[[nodiscard]] Status checkName(std::string_view name);
// What every target has, whatever its form: 1..kMaxTarget of letters, digits and . - / : [ ] % _.
[[nodiscard]] Status checkTargetText(std::string_view target);

// A dial target, by form (docs/protocol.md, "dial"); anything else is InvalidArgument.
struct Target {
  enum class Kind {
    Name,     // "<name>" or "<namespace>/<name>" (namespace empty: the caller's)
    Address,  // "a.b.c.d:port" or "[ipv6]:port"
    Kube,     // "service/<namespace>/<name>:<port or port name>" or "pod/<namespace>/<name>:<port>"
  };
  Kind kind = Kind::Name;
  std::string kubeKind;   // Kube: "service" or "pod"
  std::string ns, name;   // Name, Kube
  std::string host;       // Address: the address without brackets
  std::string port;       // Address, Kube: as written (a number, or a Service port's name)
  int portNumber = 0;     // Address, Kube: the number (0 for a port name)
};
[[nodiscard]] Expected<Target> parseTarget(std::string_view target);

// The pod endpoint's requests (hello takes nothing).
struct ListenRequest {
  std::string name;  // 1..63 of [a-z0-9.-], or "port/<n>"
  int port = 0;      // n of "port/<n>" (1..65535), else 0
};
struct DialRequest {
  std::string target;                // as parsed into `parsed`
  Target parsed;
  std::chrono::milliseconds timeout; // 1..10000, default 2000
};
struct ChannelRequest {
  std::uint64_t bytes = 0;  // 64 KiB .. 1 GiB
};
[[nodiscard]] Expected<ListenRequest> parseListen(const json& req);
[[nodiscard]] Expected<DialRequest> parseDial(const json& req);
[[nodiscard]] Expected<ChannelRequest> parseChannel(const json& req);

void to_json(json& j, const ListenRequest& r);
void to_json(json& j, const DialRequest& r);
void to_json(json& j, const ChannelRequest& r);

}  // namespace colo::proto
