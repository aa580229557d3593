#include "colo/common/replies.h"

#include <limits>

namespace colo::proto {
namespace {

template <class T>
bool fits(const json& v) {
  if constexpr (std::is_same_v<T, std::string>) return v.is_string();
  else if constexpr (std::is_same_v<T, bool>) return v.is_boolean();
  else if constexpr (std::is_same_v<T, std::int64_t>) return v.is_number_integer() && (!v.is_number_unsigned() || v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
  else if constexpr (std::is_same_v<T, std::uint64_t>) return v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0);
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    if (!v.is_array()) return false;
    for (const auto& s : v) {
      if (!s.is_string()) return false;
    }
    return true;
  }
  return false;
}

template <class T>
const char* kind() {
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (std::is_same_v<T, bool>) return "a boolean";
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "an array of strings";
  else if constexpr (std::is_same_v<T, std::uint64_t>) return "a non-negative integer";
  else return "an integer";
}

// Reads the fields of one object, keeping the first problem; nothing throws. A null field is
// an absent one.
class Fields {
 public:
  Fields(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {
    if (!obj_.is_object()) fail(where_ + " is not a JSON object");
  }
  const json* find(const char* key) const {
    if (!ok()) return nullptr;
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  template <class T>
  Fields& get(const char* key, T& out) {
    if (!ok()) return *this;
    const json* v = find(key);
    if (!v) return fail(where_ + ": missing '" + key + "'");
    return read(key, *v, out);
  }
  template <class T>
  Fields& get(const char* key, std::optional<T>& out) {
    out.reset();
    if (const json* v = find(key)) read(key, *v, out.emplace());
    return *this;
  }
  // An optional field whose absence is its default value (false, empty).
  template <class T>
  Fields& maybe(const char* key, T& out) {
    if (const json* v = find(key)) read(key, *v, out);
    return *this;
  }
  // A nested object, parsed by `parse`; required unless `out` is an optional.
  template <class T, class Parse>
  Fields& object(const char* key, T& out, Parse parse) {
    if (!ok()) return *this;
    const json* v = find(key);
    if (!v) return fail(where_ + ": missing object '" + key + "'");
    auto p = parse(*v);
    if (!p) return fail(where_ + ": " + p.error().message);
    out = std::move(*p);
    return *this;
  }
  Fields& expect(bool cond, const std::string& what) { return ok() && !cond ? fail(where_ + ": " + what) : *this; }
  bool ok() const { return !err_; }
  const Error& error() const { return *err_; }
  const std::string& where() const { return where_; }

 private:
  template <class T>
  Fields& read(const char* key, const json& v, T& out) {
    if (!ok()) return *this;
    if (!fits<T>(v)) return fail(where_ + ": '" + key + "' must be " + kind<T>());
    out = v.get<T>();
    return *this;
  }
  Fields& fail(std::string message) {
    if (!err_) err_ = proto::error(ErrorCode::BadRequest, std::move(message));
    return *this;
  }
  const json& obj_;
  std::string where_;
  std::optional<Error> err_;
};

template <class T>
Expected<T> done(const Fields& f, T value) {
  if (!f.ok()) return f.error();
  return value;
}

}  // namespace

std::string_view name(Transport t) { return t == Transport::Tcp ? "tcp" : "unix"; }

Expected<ReplyHead> parseReplyHead(const json& body) {
  ReplyHead h;
  Fields f(body, "reply");
  f.get("ok", h.ok);
  if (f.ok() && !h.ok) {
    f.object("error", h.error, [](const json& e) -> Expected<ReplyError> {
      ReplyError r;
      std::string code;
      Fields g(e, "error");
      g.get("code", code).get("message", r.message);
      r.code = errorCodeFrom(code).value_or(ErrorCode::Internal);
      return done(g, std::move(r));
    });
  }
  return done(f, std::move(h));
}

void to_json(json& j, const PodIdentity& r) {
  j = {{"namespace", r.ns}, {"name", r.name}, {"uid", r.uid}, {"key", r.key}};
  if (!r.serviceAccount.empty()) j["serviceAccount"] = r.serviceAccount;
}

Expected<PodIdentity> parsePodIdentity(const json& obj) {
  PodIdentity r;
  Fields f(obj, "identity");
  f.get("namespace", r.ns).get("name", r.name).get("uid", r.uid).get("key", r.key).maybe("serviceAccount", r.serviceAccount);
  return done(f, std::move(r));
}

void to_json(json& j, const Route& r) { j = {{"via", r.via}, {"why", r.why}}; }

void to_json(json& j, const HelloReply& r) {
  json id = r.identity;
  id["node"] = r.node;
  id["ips"] = r.ips;
  j = {{"identity", std::move(id)},
       {"peer", {{"pid", r.peer.pid}, {"uid", r.peer.uid}, {"gid", r.peer.gid}, {"via", r.peer.via}}},
       {"agent", {{"version", r.agent.version}, {"protocol", r.agent.protocol}, {"capabilities", r.agent.capabilities}}},
       {"hugepages", r.hugepages ? json{{"bytes", r.hugepages->bytes}, {"hostPath", r.hugepages->hostPath}} : json(nullptr)}};
}

Expected<HelloReply> parseHelloReply(const json& body) {
  HelloReply r;
  Fields f(body, "hello reply");
  f.object("identity", r.identity, parsePodIdentity);
  if (const json* id = f.find("identity")) {
    Fields g(*id, "hello reply: identity");
    g.get("node", r.node).get("ips", r.ips);
    if (!g.ok()) return g.error();
  }
  f.object("peer", r.peer, [](const json& p) -> Expected<HelloReply::Peer> {
    HelloReply::Peer out;
    Fields g(p, "peer");
    g.get("pid", out.pid).get("uid", out.uid).get("gid", out.gid).get("via", out.via);
    return done(g, std::move(out));
  });
  f.object("agent", r.agent, [](const json& a) -> Expected<HelloReply::Agent> {
    HelloReply::Agent out;
    Fields g(a, "agent");
    g.get("version", out.version).get("protocol", out.protocol).get("capabilities", out.capabilities);
    return done(g, std::move(out));
  });
  if (const json* h = f.find("hugepages")) {
    HelloReply::Hugepages hp;
    Fields g(*h, "hello reply: hugepages");
    g.get("bytes", hp.bytes).get("hostPath", hp.hostPath);
    if (!g.ok()) return g.error();
    r.hugepages = std::move(hp);
  }
  return done(f, std::move(r));
}

void to_json(json& j, const ListenReply& r) { j = {{"name", r.name}}; }

Expected<ListenReply> parseListenReply(const json& body) {
  ListenReply r;
  Fields f(body, "listen reply");
  f.get("name", r.name);
  return done(f, std::move(r));
}

void to_json(json& j, const DialReply& r) {
  j = {{"transport", name(r.transport)}};
  if (r.transport == Transport::Unix) {
    j["peer"] = r.peer;
    j["name"] = r.name;
  } else {
    j["peer"] = {{"address", r.address}};
  }
  if (r.route) j["route"] = *r.route;
}

Expected<DialReply> parseDialReply(const json& body) {
  DialReply r;
  std::string transport;
  Fields f(body, "dial reply");
  f.get("transport", transport).expect(transport == "unix" || transport == "tcp", "unknown transport '" + transport + "'");
  r.transport = transport == "tcp" ? Transport::Tcp : Transport::Unix;
  if (r.transport == Transport::Unix) {
    f.object("peer", r.peer, parsePodIdentity).get("name", r.name);
  } else {
    f.object("peer", r.address, [](const json& p) -> Expected<std::string> {
      std::string a;
      Fields g(p, "peer");
      g.get("address", a);
      return done(g, std::move(a));
    });
  }
  if (const json* route = f.find("route")) {
    Route rt;
    Fields g(*route, "dial reply: route");
    g.get("via", rt.via).get("why", rt.why);
    if (!g.ok()) return g.error();
    r.route = std::move(rt);
  }
  return done(f, std::move(r));
}

void to_json(json& j, const ChannelReply& r) {
  j = {{"memory", r.memory}, {"bytes", r.bytes}, {"ringCapacity", r.ringCapacity}};
  if (!r.note.empty()) j["note"] = r.note;
}

Expected<ChannelReply> parseChannelReply(const json& body) {
  ChannelReply r;
  Fields f(body, "channel reply");
  f.get("memory", r.memory).get("bytes", r.bytes).get("ringCapacity", r.ringCapacity).maybe("note", r.note);
  return done(f, std::move(r));
}

void to_json(json& j, const IncomingEvent& r) { j = {{"v", kVersion}, {"event", "incoming"}, {"name", r.name}, {"peer", r.peer}}; }

std::string eventOf(const json& body) {
  if (!body.is_object()) return {};
  auto it = body.find("event");
  return it != body.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Expected<IncomingEvent> parseIncomingEvent(const json& body) {
  IncomingEvent r;
  std::string event;
  Fields f(body, "event");
  f.get("event", event).expect(event == "incoming", "not an incoming event").get("name", r.name).object("peer", r.peer, parsePodIdentity);
  return done(f, std::move(r));
}

void to_json(json& j, const CniAddReply& r) {
  j = {{"optedIn", r.optedIn}, {"key", r.key}};
  if (r.shared) j["shared"] = true;
  if (r.endpoint) j["endpoint"] = *r.endpoint;
  if (r.hugepageBytes) j["hugepageBytes"] = *r.hugepageBytes;
  if (!r.warnings.empty()) j["warnings"] = r.warnings;
}

Expected<CniAddReply> parseCniAddReply(const json& body) {
  CniAddReply r;
  Fields f(body, "cni.add reply");
  f.get("optedIn", r.optedIn).get("key", r.key).maybe("shared", r.shared).get("endpoint", r.endpoint);
  f.get("hugepageBytes", r.hugepageBytes).maybe("warnings", r.warnings);
  return done(f, std::move(r));
}

void to_json(json& j, const CniDelReply& r) {
  j = {{"removed", r.removed}};
  if (r.key) j["key"] = *r.key;
  if (r.shared) j["shared"] = true;
  if (r.pending) j["pending"] = *r.pending;
}

Expected<CniDelReply> parseCniDelReply(const json& body) {
  CniDelReply r;
  Fields f(body, "cni.del reply");
  f.get("removed", r.removed).get("key", r.key).maybe("shared", r.shared).get("pending", r.pending);
  return done(f, std::move(r));
}

void to_json(json& j, const CniCheckReply& r) {
  j = {{"checked", r.checked}};
  if (r.key) j["key"] = *r.key;
}

Expected<CniCheckReply> parseCniCheckReply(const json& body) {
  CniCheckReply r;
  Fields f(body, "cni.check reply");
  f.get("checked", r.checked).get("key", r.key);
  return done(f, std::move(r));
}

void to_json(json& j, const CniStatusReply& r) { j = {{"ready", r.ready}, {"pods", r.pods}}; }

Expected<CniStatusReply> parseCniStatusReply(const json& body) {
  CniStatusReply r;
  Fields f(body, "cni.status reply");
  f.get("ready", r.ready).get("pods", r.pods);
  return done(f, std::move(r));
}

void to_json(json& j, const CniGcReply& r) { j = {{"removed", r.removed}, {"pending", r.pending}}; }

Expected<CniGcReply> parseCniGcReply(const json& body) {
  CniGcReply r;
  Fields f(body, "cni.gc reply");
  f.get("removed", r.removed).get("pending", r.pending);
  return done(f, std::move(r));
}

}  // namespace colo::proto
