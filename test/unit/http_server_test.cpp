// colo-node's HTTP server against clients that do not play fair: whoever reaches the port must not
// be able to keep kubelet's probes from an answer, nor hold up stop().
#include "http/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "colo/common/unique_fd.h"
#include "http/http_request.h"

namespace colo::node {
namespace {

using namespace std::chrono_literals;

HttpSources sources() {
  return {[] { return nlohmann::json{{"ready", true}}; }, [] { return std::string("colo_up 1\n"); },
          [] { return nlohmann::json{{"pods", nlohmann::json::array()}}; }, false};
}

UniqueFd connectTo(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{.sin_family = AF_INET, .sin_port = htons(static_cast<uint16_t>(port)), .sin_addr = {htonl(INADDR_LOOPBACK)}};
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
  return fd;
}

TEST(HttpRequest, ParsesAGetAndRefusesWhatIsNotHttp) {
  using S = http::RequestHead::State;
  EXPECT_EQ(http::parseRequestHead("GET /healthz HTTP/1.1\r\nHost: x\r\n").state, S::Incomplete);
  auto h = http::parseRequestHead("GET /debug/pods?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(h.state, S::Complete);
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.path, "/debug/pods");
  EXPECT_EQ(http::parseRequestHead("GET healthz HTTP/1.1\r\n\r\n").state, S::Bad);
  EXPECT_EQ(http::parseRequestHead("GET / / HTTP/1.1\r\n\r\n").state, S::Bad);
  EXPECT_EQ(http::parseRequestHead("\x16\x03\x01 TLS hello\r\n\r\n").state, S::Bad);
  EXPECT_EQ(http::parseRequestHead(std::string(9000, 'a')).state, S::TooLarge);
  const auto out = http::serialize({405, "text/plain", "no\n"});
  EXPECT_NE(out.find("HTTP/1.1 405 Method Not Allowed\r\n"), std::string::npos);
  EXPECT_NE(out.find("Allow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_NE(out.find("Connection: close\r\n\r\nno\n"), std::string::npos);
}

TEST(HttpServer, AnswersPathsAndMethods) {
  HttpServer s(sources());
  ASSERT_TRUE(s.start("127.0.0.1:0").ok());
  httplib::Client cli("127.0.0.1", s.port());
  EXPECT_EQ(cli.Get("/healthz")->body, "ok\n");
  EXPECT_EQ(cli.Get("/readyz")->status, 200);
  EXPECT_EQ(cli.Get("/metrics")->body, "colo_up 1\n");
  EXPECT_EQ(cli.Get("/debug/pods")->status, 200);
  EXPECT_EQ(cli.Get("/nope")->status, 404);
  EXPECT_EQ(cli.Post("/healthz", "x", "text/plain")->status, 405);
  auto head = cli.Head("/healthz");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
  EXPECT_FALSE(s.start("127.0.0.1:99999").ok());
}

// 200 connections that trickle a request one byte at a time (more than the server keeps): the
// probe still gets its answer well inside kubelet's 1 s timeout, and stop() does not wait for them.
TEST(HttpServer, TricklingClientsNeitherStarveProbesNorHoldStop) {
  auto s = std::make_unique<HttpServer>(sources(), HttpLimits{.maxConnections = 16, .headDeadline = 2s, .writeDeadline = 5s});
  ASSERT_TRUE(s->start("127.0.0.1:0").ok());
  std::vector<UniqueFd> slow;
  for (int i = 0; i < 200; ++i) {
    slow.push_back(connectTo(s->port()));
    ASSERT_TRUE(slow.back());
    ASSERT_EQ(::send(slow.back().get(), "G", 1, MSG_NOSIGNAL), 1);
  }
  for (int round = 0; round < 5; ++round) {
    httplib::Client cli("127.0.0.1", s->port());
    cli.set_connection_timeout(1s);
    cli.set_read_timeout(1s);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = cli.Get("/healthz");
    ASSERT_TRUE(r) << "round " << round;
    EXPECT_EQ(r->status, 200);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
    for (auto& fd : slow) (void)::send(fd.get(), "E", 1, MSG_NOSIGNAL);  // keep trickling
  }
  const auto t0 = std::chrono::steady_clock::now();
  s->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 200ms);
}

// A client that never sends its request is cut off at the head deadline, not kept forever.
TEST(HttpServer, SilentClientIsCutOffAtTheDeadline) {
  HttpServer s(sources(), HttpLimits{.maxConnections = 16, .headDeadline = 300ms, .writeDeadline = 1s});
  ASSERT_TRUE(s.start("127.0.0.1:0").ok());
  auto fd = connectTo(s.port());
  ASSERT_TRUE(fd);
  timeval tv{.tv_sec = 3, .tv_usec = 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char c;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(::recv(fd.get(), &c, 1, 0), 0);  // closed by the server
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2s);
}

}  // namespace
}  // namespace colo::node
