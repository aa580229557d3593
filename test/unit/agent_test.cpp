// A whole colo-node in-process on temporary paths: the CNI socket and HTTP, fed bad input.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "colo/common/wire.h"
#include "test_util.h"

namespace colo::node {
namespace {

using nlohmann::json;

class AgentTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  Config config;
  std::unique_ptr<Agent> agent;

  void SetUp() override {
    config.runDir = dir.path() + "/run";
    config.cniSocket = dir.path() + "/run/sock/cni.sock";
    config.stateDir = dir.path() + "/state";
    config.httpAddress = "";
    config.nodeName = "unit";
    config.datapath = "off";  // unit tests never touch the machine's cgroups or bpffs
    agent = std::make_unique<Agent>(config);
    ASSERT_TRUE(agent->start().ok());
  }
  void TearDown() override { agent.reset(); }

  UniqueFd connect() {
    auto c = wire::connectUnix(config.cniSocket);
    EXPECT_TRUE(c.ok());
    return std::move(c.value());
  }
  json roundTrip(int fd, const std::string& raw) {
    EXPECT_EQ(::send(fd, raw.data(), raw.size(), MSG_NOSIGNAL), static_cast<ssize_t>(raw.size()));
    EXPECT_TRUE(wire::waitReadable(fd, std::chrono::seconds(2)).ok());
    auto m = wire::recv(fd);
    EXPECT_TRUE(m.ok());
    return m.ok() ? m->body : json();
  }
};

TEST_F(AgentTest, SocketModes) {
  struct stat st{};
  ASSERT_EQ(::stat(config.cniSocket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir.path() + "/run/sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(AgentTest, SurvivesMalformedMessagesOnOneConnection) {
  auto c = connect();
  EXPECT_EQ(roundTrip(c.get(), "garbage")["error"]["code"], "bad_request");
  EXPECT_EQ(roundTrip(c.get(), "[]")["error"]["code"], "bad_request");
  EXPECT_EQ(roundTrip(c.get(), R"({"v":2,"id":1,"op":"cni.status"})")["error"]["code"], "unsupported_version");
  EXPECT_EQ(roundTrip(c.get(), R"({"v":1,"id":2,"op":"nope"})")["error"]["code"], "unknown_op");
  auto r = roundTrip(c.get(), R"({"v":1,"id":3,"op":"cni.status"})");
  EXPECT_EQ(r["ok"], true);
  EXPECT_EQ(r["id"], 3);
}

TEST_F(AgentTest, AHugeUnknownOpGetsUnknownOpNotAnOversizedReply) {
  auto c = connect();
  const std::string op(65500, 'x');
  auto r = roundTrip(c.get(), R"({"v":1,"id":4,"op":")" + op + R"("})");
  EXPECT_EQ(r["error"]["code"], "unknown_op") << r.dump().substr(0, 200);
  EXPECT_EQ(r["id"], 4);
  EXPECT_LT(r["error"]["message"].get<std::string>().size(), 200u);
}

TEST_F(AgentTest, AnIdOutsideTheRangeIsRefusedAndNotEchoed) {
  auto c = connect();
  auto r = roundTrip(c.get(), R"({"v":1,"id":18446744073709551615,"op":"cni.status"})");
  EXPECT_EQ(r["error"]["code"], "bad_request");
  EXPECT_TRUE(r["id"].is_null()) << r.dump();
  r = roundTrip(c.get(), R"({"v":1,"id":9223372036854775807,"op":"cni.status"})");
  EXPECT_EQ(r["ok"], true);
  EXPECT_EQ(r["id"], 9223372036854775807LL);
}

TEST_F(AgentTest, SurvivesOversizedMessage) {
  auto c = connect();
  int buf = 1 << 20;
  ::setsockopt(c.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  const std::string big(200 * 1024, '{');
  ssize_t n = ::send(c.get(), big.data(), big.size(), MSG_NOSIGNAL);
  if (n > 0) {
    ASSERT_TRUE(wire::waitReadable(c.get(), std::chrono::seconds(2)).ok());
    auto m = wire::recv(c.get());
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->body["error"]["code"], "too_large");
  }
  auto c2 = connect();
  EXPECT_EQ(roundTrip(c2.get(), R"({"v":1,"id":4,"op":"cni.status"})")["ok"], true);
}

TEST_F(AgentTest, SurvivesClientsThatVanishMidRequest) {
  for (int i = 0; i < 50; ++i) {
    auto c = connect();
    if (i % 2) {
      const std::string req = R"({"v":1,"id":1,"op":"cni.status"})";
      (void)!::send(c.get(), req.data(), req.size(), MSG_NOSIGNAL);
    }
  }  // closed without reading the reply
  auto c = connect();
  EXPECT_EQ(roundTrip(c.get(), R"({"v":1,"id":5,"op":"cni.status"})")["ok"], true);
}

TEST_F(AgentTest, RefusesDescriptorThatIsNotANetnsAndHostNetwork) {
  auto c = connect();
  json add = {{"v", 1}, {"id", 9}, {"op", "cni.add"}, {"optIn", true},
              {"attachment", {{"network", "n"}, {"containerID", "c1"}, {"ifname", "eth0"}}}};
  for (const char* path : {"/dev/null", "/proc/self/ns/net"}) {
    UniqueFd f(::open(path, O_RDONLY | O_CLOEXEC));
    const int fds[] = {f.get()};
    auto r = wire::call(c.get(), add, fds, std::chrono::seconds(2));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->body["ok"], false) << path;
    if (std::string(path) == "/dev/null") EXPECT_EQ(r->body["error"]["code"], "bad_netns");
    else EXPECT_NE(r->body["error"]["message"].get<std::string>().find("hostNetwork"), std::string::npos);
  }
  EXPECT_EQ(agent->debugPods()["pods"].size(), 0u);
}

TEST_F(AgentTest, HttpEndpoints) {
  agent.reset();
  config.httpAddress = "127.0.0.1:0";  // any free port
  agent = std::make_unique<Agent>(config);
  ASSERT_TRUE(agent->start().ok());
  const int port = agent->httpPort();
  httplib::Client cli("127.0.0.1", port);
  auto h = cli.Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto ready = cli.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(json::parse(ready->body)["checks"]["cniSocket"], "ok");
  auto m = cli.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("colo_pods 0"), std::string::npos);
  EXPECT_NE(m->body.find("# TYPE colo_cni_requests_total counter"), std::string::npos);
  auto p = cli.Get("/debug/pods");
  ASSERT_TRUE(p);
  EXPECT_EQ(json::parse(p->body)["node"], "unit");
  ::unlink(config.cniSocket.c_str());  // readiness notices a vanished socket
  EXPECT_EQ(cli.Get("/readyz")->status, 503);
}

}  // namespace
}  // namespace colo::node
