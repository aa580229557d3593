// The typed protocol: error codes and their one CNI mapping, parse limits, typed fields.
#include <gtest/gtest.h>

#include <limits>
#include <set>

#include "colo/common/protocol.h"

namespace colo::proto {
namespace {

TEST(Protocol, EveryErrorCodeHasOneDistinctNameThatParsesBack) {
  std::set<std::string_view> names;
  for (auto c : kAllErrorCodes) {
    EXPECT_TRUE(names.insert(name(c)).second) << name(c);
    EXPECT_EQ(errorCodeFrom(name(c)), c);
  }
  EXPECT_FALSE(errorCodeFrom("no_such_code").has_value());
}

TEST(Protocol, OneMappingToCniCodes) {
  EXPECT_EQ(cniCode(ErrorCode::UnsupportedVersion), 1u);
  EXPECT_EQ(cniCode(ErrorCode::NotFound), 3u);
  EXPECT_EQ(cniCode(ErrorCode::BadNetns), 4u);
  EXPECT_EQ(cniCode(ErrorCode::TooLarge), 5u);
  EXPECT_EQ(cniCode(ErrorCode::BadRequest), 7u);
  EXPECT_EQ(cniCode(ErrorCode::InvalidArgument), 7u);
  EXPECT_EQ(cniCode(ErrorCode::Unavailable), 11u);
  EXPECT_EQ(cniCode(ErrorCode::Timeout), 11u);
  EXPECT_EQ(cniCode(ErrorCode::ResourceExhausted), 11u);
  EXPECT_EQ(cniCode(ErrorCode::Internal), 999u);
  EXPECT_EQ(cniCode("resource_exhausted"), 11u);
  EXPECT_EQ(cniCode("from_a_newer_agent"), 999u);  // unknown: internal, never a crash
}

TEST(Protocol, DeepNestingIsRefusedBeforeTheJsonLibraryRecurses) {
  const std::string deep = "{\"v\":1,\"id\":" + std::string(10000, '[') + std::string(10000, ']') + "}";
  auto r = parseMessage(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "bad_request");
  std::string ok = "{\"a\":" + std::string(kMaxDepth - 1, '[') + std::string(kMaxDepth - 1, ']') + "}";
  EXPECT_TRUE(parseMessage(ok).ok());
  // Brackets inside strings (escaped quotes too) do not count.
  EXPECT_TRUE(parseMessage("{\"s\":\"" + std::string(100, '[') + "\\\"" + std::string(100, '{') + "\"}").ok());
}

TEST(Protocol, SizeAndShape) {
  EXPECT_EQ(parseMessage(std::string(kMaxMessage + 1, ' ')).error().code, "too_large");
  EXPECT_EQ(parseMessage("[]").error().code, "bad_request");
  EXPECT_EQ(parseMessage("{").error().code, "bad_request");
}

TEST(Protocol, Envelope) {
  EXPECT_EQ(parseEnvelope(json{{"v", 2}, {"id", 1}, {"op", "x"}}).error().code, "unsupported_version");
  EXPECT_EQ(parseEnvelope(json{{"v", "1"}, {"id", 1}, {"op", "x"}}).error().code, "bad_request");
  EXPECT_EQ(parseEnvelope(json{{"v", 1}, {"id", -1}, {"op", "x"}}).error().code, "bad_request");
  EXPECT_EQ(parseEnvelope(json{{"v", 1}, {"id", 1}, {"op", 3}}).error().code, "bad_request");
  auto e = parseEnvelope(json{{"v", 1}, {"id", 7}, {"op", "hello"}});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->id, 7);
  EXPECT_EQ(e->op, "hello");
}

TEST(Protocol, RepliesCopyOnlyAnIntegerId) {
  EXPECT_EQ(okReply(json{{"id", 5}})["id"], 5);
  EXPECT_TRUE(okReply(json{{"id", json::array({1, 2})}})["id"].is_null());
  EXPECT_TRUE(okReply(json(nullptr))["id"].is_null());
  auto e = errorReply(json{{"id", 3}}, ErrorCode::ResourceExhausted, "cap");
  EXPECT_EQ(e["ok"], false);
  EXPECT_EQ(e["error"]["code"], "resource_exhausted");
}

TEST(Protocol, IdsAreZeroTo2Pow63Minus1AndARefusedIdIsNotEchoed) {
  const auto max = json::parse("9223372036854775807");
  const auto over = json::parse("9223372036854775808");
  const auto top = json::parse("18446744073709551615");
  EXPECT_TRUE(parseEnvelope(json{{"v", 1}, {"id", 0}, {"op", "x"}}).ok());
  auto e = parseEnvelope(json{{"v", 1}, {"id", max}, {"op", "x"}});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->id, std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(okReply(json{{"id", max}})["id"], max);
  for (const auto& bad : {over, top, json(-1), json(1.5)}) {
    EXPECT_EQ(parseEnvelope(json{{"v", 1}, {"id", bad}, {"op", "x"}}).error().code, "bad_request") << bad;
    EXPECT_TRUE(errorReply(json{{"id", bad}}, ErrorCode::BadRequest, "no id")["id"].is_null()) << bad;
  }
}

TEST(Protocol, QuoteOpCapsWhatItRepeats) {
  EXPECT_EQ(quoteOp("hello"), "'hello'");
  const std::string huge(65500, 'x');
  auto q = quoteOp(huge);
  EXPECT_EQ(q, "'" + std::string(64, 'x') + "...' (65500 bytes)");
  // A cut never splits a UTF-8 character (the reply must stay dumpable JSON).
  std::string utf(63, 'a');
  for (int i = 0; i < 10; ++i) utf += "\xc3\xa9";
  EXPECT_NO_THROW((void)json(quoteOp(utf)).dump());
  EXPECT_EQ(quoteOp(utf).substr(0, 64), "'" + std::string(63, 'a'));
  EXPECT_EQ(quoteOp(utf).substr(64, 3), "...");
}

TEST(Protocol, WrongTypedFieldsAreBadRequestNotInternal) {
  EXPECT_EQ(parseListen(json{{"name", 5}}).error().code, "bad_request");
  EXPECT_EQ(parseListen(json::object()).error().code, "bad_request");
  EXPECT_EQ(parseListen(json{{"name", "Bad Name"}}).error().code, "invalid_argument");
  EXPECT_EQ(parseDial(json{{"target", "x"}, {"timeoutMs", "soon"}}).error().code, "bad_request");
  EXPECT_EQ(parseDial(json{{"target", json::object()}}).error().code, "bad_request");
  EXPECT_EQ(parseChannel(json{{"bytes", "1Mi"}}).error().code, "bad_request");
  EXPECT_EQ(parseChannel(json{{"bytes", -5}}).error().code, "invalid_argument");
  EXPECT_EQ(parseChannel(json{{"bytes", 1}}).error().code, "invalid_argument");
  auto d = parseDial(json{{"target", "echo"}, {"timeoutMs", 99999}});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->timeout.count(), 10000);  // clamped
  json j = *d;
  EXPECT_EQ(j["op"], "dial");
  EXPECT_EQ(parseDial(j)->target, "echo");
  json c = ChannelRequest{1 << 20};
  EXPECT_EQ(parseChannel(c)->bytes, 1u << 20);
}

// libcolo sends these structs' to_json: the bytes are the ones it wrote by hand before (agents
// and the Go and Python clients read exactly these fields).
TEST(Protocol, PodEndpointRequestsKeepTheirWireBytes) {
  EXPECT_EQ(json(ListenRequest{.name = "echo", .port = 0}).dump(), R"({"name":"echo","op":"listen"})");
  DialRequest d;
  d.target = "shop/echo";
  d.timeout = std::chrono::milliseconds(2000);
  EXPECT_EQ(json(d).dump(), R"({"op":"dial","target":"shop/echo","timeoutMs":2000})");
  EXPECT_EQ(json(ChannelRequest{.bytes = 1ull << 20}).dump(), R"({"bytes":1048576,"op":"channel"})");
}

// One check of names and targets for colo-node and libcolo (Go and Python make the same one):
// what a client refuses before sending, colo-node refuses too, with invalid_argument.
TEST(Protocol, ListenNamesAndPorts) {
  for (const char* ok : {"echo", "a", "shop.v2-x", "port/1", "port/80", "port/65535"}) EXPECT_TRUE(checkName(ok).ok()) << ok;
  for (const char* bad : {"", "Echo", "a_b", "a b", "port/080", "port/0", "port/65536", "port/", "port/8o", "port/-1", "port/+80",
                          "a/b", "caf\xc3\xa9"}) {
    auto s = checkName(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().code, "invalid_argument") << bad;
    EXPECT_EQ(parseListen(json{{"name", bad}}).error().code, "invalid_argument") << bad;
  }
  EXPECT_FALSE(checkName(std::string(64, 'a')).ok());
  EXPECT_TRUE(checkName(std::string(63, 'a')).ok());
  EXPECT_EQ(parseListen(json{{"name", "port/8080"}})->port, 8080);
  EXPECT_EQ(parsePort("080"), std::nullopt);
  EXPECT_EQ(parsePort("99999"), std::nullopt);
  EXPECT_EQ(parsePort("443"), 443);
}

TEST(Protocol, DialTargetsByForm) {
  using K = Target::Kind;
  auto t = parseTarget("echo");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, K::Name);
  EXPECT_EQ(t->ns, "");
  EXPECT_EQ(t->name, "echo");
  t = parseTarget("shop/echo");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->ns, "shop");
  EXPECT_EQ(t->name, "echo");
  t = parseTarget("198.18.0.7:8080");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, K::Address);
  EXPECT_EQ(t->host, "198.18.0.7");
  EXPECT_EQ(t->portNumber, 8080);
  t = parseTarget("[fd00::7]:80");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host, "fd00::7");
  t = parseTarget("service/shop/cart:http");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, K::Kube);
  EXPECT_EQ(t->kubeKind, "service");
  EXPECT_EQ(t->ns, "shop");
  EXPECT_EQ(t->name, "cart");
  EXPECT_EQ(t->port, "http");
  EXPECT_EQ(t->portNumber, 0);
  t = parseTarget("pod/shop/cart-0.x:8080");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->portNumber, 8080);
  for (const char* bad : {"", "shop/echo x", "a\nb", "caf\xc3\xa9", "Echo", "a_b", "port/080", "port/80", "shop/port/80", "a/b/c",
                          "/echo", "shop/", "198.18.0.7:080", "198.18.0.7:0", "198.18.0.7:65536", "198.18.0.7:", "host.example:80",
                          "1.2.3:80", "[fd00::7%eth0]:80", "[fd00::7]:08", "fd00::7", "service/shop/cart:080", "pod/shop/cart:http",
                          "service/shop:80", "service//cart:80", "service/shop/cart:Http", "service/shop/cart:a_b",
                          "service/Shop/cart:80", "pod/shop/cart:99999"}) {
    auto r = parseTarget(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, "invalid_argument") << bad;
    EXPECT_EQ(parseDial(json{{"target", bad}}).error().code, "invalid_argument") << bad;
  }
  EXPECT_EQ(parseTarget(std::string(kMaxTarget + 1, 'a')).error().code, "invalid_argument");
  EXPECT_EQ(parseDial(json{{"target", std::string(70000, 'a')}}).error().code, "invalid_argument");
  EXPECT_TRUE(checkTargetText(std::string(kMaxTarget, 'a')).ok());  // the clients' bound: size and characters only
}

}  // namespace
}  // namespace colo::proto
