// The protocol's replies and events, typed: one struct per reply, to_json for colo-node and a
// parser for libcolo and colo-cni. A struct holds only its op's fields; okReply(request, r) adds
// the envelope. Parsers never throw: a missing or wrong-typed field is BadRequest ("protocol
// error" to a client). Optional fields are std::optional (or empty) and left out of the JSON, so
// the bytes on the wire are what the Go and Python clients expect. See docs/protocol.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "colo/common/protocol.h"

namespace colo::proto {

// Every reply's envelope: ok, or the error it carries (an unknown code is Internal).
struct ReplyError {
  ErrorCode code = ErrorCode::Internal;
  std::string message;
};
struct ReplyHead {
  bool ok = false;
  ReplyError error;  // when !ok
};
[[nodiscard]] Expected<ReplyHead> parseReplyHead(const json& body);

// A pod as colo-node names it (hello's identity, dial's and incoming's peer).
struct PodIdentity {
  std::string ns, name, uid, key;
  std::string serviceAccount;  // Kubernetes mode only; empty: left out
};

struct HelloReply {
  PodIdentity identity;
  std::string node;
  std::vector<std::string> ips;
  struct Peer {
    std::int64_t pid = 0;
    std::uint64_t uid = 0, gid = 0;
    std::string via;  // the listener the caller came through
  } peer;
  struct Agent {
    std::string version;
    std::int64_t protocol = kVersion;
    std::vector<std::string> capabilities;
  } agent;
  struct Hugepages {
    std::uint64_t bytes = 0;
    std::string hostPath;
  };
  std::optional<Hugepages> hugepages;  // null on the wire when the pod has none
};

struct ListenReply {
  std::string name;  // as registered: "<namespace>/<name>" or "pod/<ns>/<name>:<n>"
};

enum class Transport { Unix, Tcp };
// How a dial by Kubernetes name went ("unix", "pod-ip", "cluster-ip") and why.
struct Route {
  std::string via, why;
};
struct DialReply {
  Transport transport = Transport::Unix;
  PodIdentity peer;      // Unix: the listener
  std::string name;      // Unix: the name dialed
  std::string address;   // Tcp: ip:port connected to
  std::optional<Route> route;
};

struct ChannelReply {
  std::string memory;  // "hugepages" or "memfd"
  std::uint64_t bytes = 0, ringCapacity = 0;
  std::string note;    // why ordinary memory; empty: left out
};

// The event a listener gets per incoming dial (no id, no ok).
struct IncomingEvent {
  std::string name;
  PodIdentity peer;
};

// The CNI socket.
struct CniAddReply {
  bool optedIn = false;
  std::string key;
  bool shared = false;  // written only when true
  std::optional<std::string> endpoint;
  std::optional<std::uint64_t> hugepageBytes;
  std::vector<std::string> warnings;  // written only when there are some
};
struct CniDelReply {
  bool removed = false;
  std::optional<std::string> key;  // absent when nothing was held
  bool shared = false;             // written only when true
  std::optional<bool> pending;
};
struct CniCheckReply {
  std::optional<std::string> key;
  std::string checked;
};
struct CniStatusReply {
  bool ready = false;
  std::uint64_t pods = 0;
};
struct CniGcReply {
  std::vector<std::string> removed, pending;
};

[[nodiscard]] std::string_view name(Transport t);

void to_json(json& j, const PodIdentity& r);
void to_json(json& j, const Route& r);
void to_json(json& j, const HelloReply& r);
void to_json(json& j, const ListenReply& r);
void to_json(json& j, const DialReply& r);
void to_json(json& j, const ChannelReply& r);
void to_json(json& j, const IncomingEvent& r);
void to_json(json& j, const CniAddReply& r);
void to_json(json& j, const CniDelReply& r);
void to_json(json& j, const CniCheckReply& r);
void to_json(json& j, const CniStatusReply& r);
void to_json(json& j, const CniGcReply& r);

// Each takes a whole reply (envelope included) and reads only its own fields.
[[nodiscard]] Expected<PodIdentity> parsePodIdentity(const json& obj);
[[nodiscard]] Expected<HelloReply> parseHelloReply(const json& body);
[[nodiscard]] Expected<ListenReply> parseListenReply(const json& body);
[[nodiscard]] Expected<DialReply> parseDialReply(const json& body);
[[nodiscard]] Expected<ChannelReply> parseChannelReply(const json& body);
[[nodiscard]] Expected<IncomingEvent> parseIncomingEvent(const json& body);
// The "event" of an event message; "" for a reply or anything else.
[[nodiscard]] std::string eventOf(const json& body);
[[nodiscard]] Expected<CniAddReply> parseCniAddReply(const json& body);
[[nodiscard]] Expected<CniDelReply> parseCniDelReply(const json& body);
[[nodiscard]] Expected<CniCheckReply> parseCniCheckReply(const json& body);
[[nodiscard]] Expected<CniStatusReply> parseCniStatusReply(const json& body);
[[nodiscard]] Expected<CniGcReply> parseCniGcReply(const json& body);

// An ok reply to `request` carrying `r`'s fields.
template <class T>
[[nodiscard]] json okReply(const json& request, const T& r) {
  json out = okReply(request);
  out.update(json(r));
  return out;
}

}  // namespace colo::proto
