// The typed replies: each struct survives the wire (to_json, dump, parse, its parser), its bytes
// are the ones the Go and Python clients read, and each parser answers bad_request, never an
// exception, for a missing or wrong-typed field.
#include <gtest/gtest.h>

#include <functional>

#include "colo/common/replies.h"

namespace colo::proto {
namespace {

// What a peer receives: the reply as text, parsed again.
json overWire(const json& j) { return json::parse(j.dump()); }

template <class T>
T roundTrip(const T& r, Expected<T> (*parse)(const json&)) {
  const json wire = overWire(okReply(json{{"id", 7}}, r));
  EXPECT_EQ(wire["ok"], true);
  EXPECT_EQ(wire["id"], 7);
  auto back = parse(wire);
  EXPECT_TRUE(back.ok()) << (back ? "" : back.error().message);
  if (!back) return T{};
  EXPECT_EQ(json(*back), json(r));  // nothing lost or added
  return *back;
}

PodIdentity cart() { return {"shop", "cart", "8c0e", "8c0e", ""}; }

TEST(Replies, HelloRoundTripsAndKeepsItsShape) {
  HelloReply h;
  h.identity = cart();
  h.node = "node-1";
  h.ips = {"198.18.0.7/24"};
  h.peer = {4242, 1000, 1000, "@colo"};
  h.agent = {"0.1.0", 1, {"hello", "listen"}};
  h.hugepages = HelloReply::Hugepages{67108864, "/run/colo/pods/8c0e/hugepages"};
  auto back = roundTrip(h, parseHelloReply);
  EXPECT_EQ(back.identity.ns, "shop");
  EXPECT_EQ(back.node, "node-1");
  EXPECT_EQ(back.peer.pid, 4242);
  ASSERT_TRUE(back.hugepages);
  EXPECT_EQ(back.hugepages->bytes, 67108864u);
  EXPECT_EQ(json(h).dump(),
            R"({"agent":{"capabilities":["hello","listen"],"protocol":1,"version":"0.1.0"},"hugepages":{"bytes":67108864,)"
            R"("hostPath":"/run/colo/pods/8c0e/hugepages"},"identity":{"ips":["198.18.0.7/24"],"key":"8c0e","name":"cart",)"
            R"("namespace":"shop","node":"node-1","uid":"8c0e"},"peer":{"gid":1000,"pid":4242,"uid":1000,"via":"@colo"}})");
  h.hugepages.reset();
  EXPECT_TRUE(json(h)["hugepages"].is_null());  // null, not absent: what the clients expect
  EXPECT_FALSE(roundTrip(h, parseHelloReply).hugepages);
}

TEST(Replies, ListenRoundTrips) { EXPECT_EQ(roundTrip(ListenReply{"shop/echo"}, parseListenReply).name, "shop/echo"); }

TEST(Replies, DialRoundTripsBothTransports) {
  DialReply u;
  u.peer = cart();
  u.peer.serviceAccount = "checkout";
  u.name = "shop/echo";
  EXPECT_EQ(json(u).dump(),
            R"({"name":"shop/echo","peer":{"key":"8c0e","name":"cart","namespace":"shop","serviceAccount":"checkout","uid":"8c0e"},"transport":"unix"})");
  EXPECT_EQ(roundTrip(u, parseDialReply).peer.serviceAccount, "checkout");
  DialReply t;
  t.transport = Transport::Tcp;
  t.address = "198.18.0.9:80";
  t.route = Route{"pod-ip", "a reason"};
  EXPECT_EQ(json(t).dump(), R"({"peer":{"address":"198.18.0.9:80"},"route":{"via":"pod-ip","why":"a reason"},"transport":"tcp"})");
  auto back = roundTrip(t, parseDialReply);
  EXPECT_EQ(back.transport, Transport::Tcp);
  EXPECT_EQ(back.address, "198.18.0.9:80");
  ASSERT_TRUE(back.route);
  EXPECT_EQ(back.route->via, "pod-ip");
}

TEST(Replies, ChannelRoundTripsWithAndWithoutNote) {
  ChannelReply c{"hugepages", 2097152, 1048576, ""};
  EXPECT_FALSE(json(c).contains("note"));
  EXPECT_EQ(roundTrip(c, parseChannelReply).bytes, 2097152u);
  c.note = "pod share used up";
  EXPECT_EQ(roundTrip(c, parseChannelReply).note, "pod share used up");
}

TEST(Replies, IncomingEventRoundTrips) {
  const IncomingEvent e{"shop/echo", cart()};
  const json wire = overWire(json(e));
  EXPECT_EQ(wire.dump(), R"({"event":"incoming","name":"shop/echo","peer":{"key":"8c0e","name":"cart","namespace":"shop","uid":"8c0e"},"v":1})");
  EXPECT_EQ(eventOf(wire), "incoming");
  EXPECT_EQ(eventOf(json{{"ok", true}}), "");
  auto back = parseIncomingEvent(wire);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(json(*back), json(e));
  EXPECT_FALSE(parseIncomingEvent(json{{"v", 1}, {"event", "other"}, {"name", "x"}, {"peer", json(cart())}}).ok());
}

TEST(Replies, CniRepliesRoundTripInEachShapeColoNodeSends) {
  EXPECT_EQ(json(CniAddReply{.optedIn = false, .key = "k"}).dump(), R"({"key":"k","optedIn":false})");
  roundTrip(CniAddReply{.optedIn = false, .key = "k"}, parseCniAddReply);
  roundTrip(CniAddReply{.optedIn = true, .key = "k", .shared = true, .endpoint = "/run/colo/pods/k"}, parseCniAddReply);
  auto add = roundTrip(CniAddReply{.optedIn = true, .key = "k", .endpoint = "/e", .hugepageBytes = 0, .warnings = {"w"}}, parseCniAddReply);
  ASSERT_TRUE(add.hugepageBytes);  // present even when 0
  EXPECT_EQ(*add.hugepageBytes, 0u);
  EXPECT_EQ(add.warnings, std::vector<std::string>{"w"});

  EXPECT_EQ(json(CniDelReply{}).dump(), R"({"removed":false})");
  roundTrip(CniDelReply{}, parseCniDelReply);
  roundTrip(CniDelReply{.removed = true, .key = "k", .shared = true}, parseCniDelReply);
  EXPECT_TRUE(roundTrip(CniDelReply{.removed = true, .key = "k", .pending = true}, parseCniDelReply).pending.value_or(false));

  roundTrip(CniCheckReply{std::nullopt, "not opted in: nothing held"}, parseCniCheckReply);
  EXPECT_EQ(roundTrip(CniCheckReply{"k", "held"}, parseCniCheckReply).key.value_or(""), "k");
  EXPECT_EQ(roundTrip(CniStatusReply{true, 3}, parseCniStatusReply).pods, 3u);
  EXPECT_EQ(json(CniGcReply{}).dump(), R"({"pending":[],"removed":[]})");
  EXPECT_EQ(roundTrip(CniGcReply{{"a"}, {"b"}}, parseCniGcReply).pending, std::vector<std::string>{"b"});
}

TEST(Replies, HeadReadsOkAndErrorsAndMapsUnknownCodesToInternal) {
  auto ok = parseReplyHead(okReply(json{{"id", 1}}));
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->ok);
  auto err = parseReplyHead(overWire(errorReply(json{{"id", 1}}, ErrorCode::AlreadyExists, "taken")));
  ASSERT_TRUE(err.ok());
  EXPECT_FALSE(err->ok);
  EXPECT_EQ(err->error.code, ErrorCode::AlreadyExists);
  EXPECT_EQ(err->error.message, "taken");
  auto newer = parseReplyHead(json{{"ok", false}, {"error", {{"code", "from_the_future"}, {"message", "m"}}}});
  ASSERT_TRUE(newer.ok());
  EXPECT_EQ(newer->error.code, ErrorCode::Internal);
  for (const json& bad : {json(nullptr), json::array(), json{{"ok", "yes"}}, json{{"v", 1}}, json{{"ok", false}},
                          json{{"ok", false}, {"error", "x"}}, json{{"ok", false}, {"error", {{"code", 3}, {"message", "m"}}}}}) {
    auto h = parseReplyHead(bad);
    ASSERT_FALSE(h.ok()) << bad.dump();
    EXPECT_EQ(h.error().code, "bad_request");
  }
}

// Every field of a valid reply, one at a time: removed (when required) and given the wrong type.
// `path` is a JSON pointer into the reply.
void expectEachFieldChecked(const char* what, const std::function<Status(const json&)>& parse, const json& valid,
                            const std::vector<std::string>& required, const std::vector<std::string>& all) {
  SCOPED_TRACE(what);
  ASSERT_TRUE(parse(valid).ok()) << valid.dump();
  for (const auto& p : required) {
    json j = valid;
    const json::json_pointer ptr(p);
    j[ptr.parent_pointer()].erase(ptr.back());
    auto s = parse(j);
    ASSERT_FALSE(s.ok()) << "missing " << p;
    EXPECT_EQ(s.error().code, "bad_request");
    EXPECT_NE(s.error().message.find(ptr.back()), std::string::npos) << s.error().message;
  }
  for (const auto& p : all) {
    for (const json& wrong : {json(3.5), json("text"), json::array({1}), json{{"a", 1}}}) {
      json j = valid;
      const json::json_pointer ptr(p);
      if (j[ptr].type() == wrong.type()) continue;  // not wrong
      j[ptr] = wrong;
      auto s = parse(j);
      ASSERT_FALSE(s.ok()) << p << " = " << wrong.dump();
      EXPECT_EQ(s.error().code, "bad_request");
    }
  }
}

template <class T>
std::function<Status(const json&)> status(Expected<T> (*parse)(const json&)) {
  return [parse](const json& j) -> Status {
    auto r = parse(j);
    if (!r) return r.error();
    return {};
  };
}

TEST(Replies, EveryParserRefusesMissingAndWrongTypedFields) {
  const std::vector<std::string> id = {"/namespace", "/name", "/uid", "/key"};
  auto under = [](const std::string& prefix, std::vector<std::string> v) {
    for (auto& p : v) p = prefix + p;
    return v;
  };
  auto plus = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  HelloReply h;
  h.identity = cart();
  h.hugepages = HelloReply::Hugepages{2097152, "/h"};
  const auto helloReq = plus(plus(under("/identity", plus(id, {"/node", "/ips"})), {"/peer/pid", "/peer/uid", "/peer/gid", "/peer/via"}),
                             {"/agent/version", "/agent/protocol", "/agent/capabilities", "/hugepages/bytes", "/hugepages/hostPath"});
  expectEachFieldChecked("hello", status(parseHelloReply), overWire(okReply(json{{"id", 1}}, h)), helloReq,
                         plus(helloReq, {"/identity", "/peer", "/agent", "/hugepages"}));
  expectEachFieldChecked("listen", status(parseListenReply), overWire(okReply(json{{"id", 1}}, ListenReply{"a/b"})), {"/name"}, {"/name"});
  DialReply u;
  u.peer = cart();
  u.name = "a/b";
  u.route = Route{"unix", "why"};
  const auto dialReq = plus(plus({"/transport", "/name"}, under("/peer", id)), {"/route/via", "/route/why"});
  expectEachFieldChecked("dial unix", status(parseDialReply), overWire(okReply(json{{"id", 1}}, u)), dialReq, plus(dialReq, {"/peer", "/route"}));
  DialReply t;
  t.transport = Transport::Tcp;
  t.address = "198.18.0.1:1";
  expectEachFieldChecked("dial tcp", status(parseDialReply), overWire(okReply(json{{"id", 1}}, t)), {"/peer/address", "/peer"},
                         {"/peer/address", "/peer", "/transport"});
  expectEachFieldChecked("channel", status(parseChannelReply), overWire(okReply(json{{"id", 1}}, ChannelReply{"memfd", 65536, 32768, "n"})),
                         {"/memory", "/bytes", "/ringCapacity"}, {"/memory", "/bytes", "/ringCapacity", "/note"});
  const auto evReq = plus({"/event", "/name"}, under("/peer", id));
  expectEachFieldChecked("incoming", status(parseIncomingEvent), overWire(json(IncomingEvent{"a/b", cart()})), evReq, plus(evReq, {"/peer"}));
  expectEachFieldChecked("cni.add", status(parseCniAddReply),
                         overWire(okReply(json{{"id", 1}}, CniAddReply{.optedIn = true, .key = "k", .shared = true, .endpoint = "/e",
                                                                         .hugepageBytes = 1, .warnings = {"w"}})),
                         {"/optedIn", "/key"}, {"/optedIn", "/key", "/shared", "/endpoint", "/hugepageBytes", "/warnings", "/warnings/0"});
  expectEachFieldChecked("cni.del", status(parseCniDelReply),
                         overWire(okReply(json{{"id", 1}}, CniDelReply{.removed = true, .key = "k", .shared = true, .pending = false})),
                         {"/removed"}, {"/removed", "/key", "/shared", "/pending"});
  expectEachFieldChecked("cni.check", status(parseCniCheckReply), overWire(okReply(json{{"id", 1}}, CniCheckReply{"k", "held"})), {"/checked"},
                         {"/checked", "/key"});
  expectEachFieldChecked("cni.status", status(parseCniStatusReply), overWire(okReply(json{{"id", 1}}, CniStatusReply{true, 2})),
                         {"/ready", "/pods"}, {"/ready", "/pods"});
  expectEachFieldChecked("cni.gc", status(parseCniGcReply), overWire(okReply(json{{"id", 1}}, CniGcReply{{"a"}, {"b"}})), {"/removed", "/pending"},
                         {"/removed", "/pending", "/removed/0"});
}

TEST(Replies, UnsignedFieldsRefuseNegatives) {
  json j = overWire(okReply(json{{"id", 1}}, ChannelReply{"memfd", 65536, 32768, ""}));
  j["bytes"] = -1;
  EXPECT_EQ(parseChannelReply(j).error().code, "bad_request");
}

TEST(Replies, NotAnObjectIsBadRequestForEveryParser) {
  for (const json& j : {json(nullptr), json(1), json("s"), json::array()}) {
    EXPECT_FALSE(parseHelloReply(j).ok());
    EXPECT_FALSE(parseDialReply(j).ok());
    EXPECT_FALSE(parseChannelReply(j).ok());
    EXPECT_FALSE(parseIncomingEvent(j).ok());
    EXPECT_FALSE(parseCniAddReply(j).ok());
    EXPECT_EQ(parseCniGcReply(j).error().code, "bad_request");
  }
  EXPECT_FALSE(parseDialReply(json{{"transport", "quic"}}).ok());
}

}  // namespace
}  // namespace colo::proto
