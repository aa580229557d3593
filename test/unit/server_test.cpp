// Every cap of the server loop, the broker and admission, without root: a SeqpacketServer on a
// temporary path with handlers made for the test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <latch>
#include <limits>
#include <thread>

#include "broker/broker.h"
#include "colo/common/netns.h"
#include "colo/common/wire.h"
#include "endpoints/endpoint_manager.h"
#include "endpoints/pod_api.h"
#include "hugepages/hugepage_manager.h"
#include "server/seqpacket_server.h"
#include "server/worker_pool.h"
#include "test_util.h"

namespace colo::node {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

json request(const std::string& op, std::int64_t id = 1) { return {{"v", 1}, {"id", id}, {"op", op}}; }

class ServerTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  Metrics metrics;
  std::unique_ptr<SeqpacketServer> server;
  std::string path() const { return dir.path() + "/s.sock"; }

  void start(RequestHandler h, ServerLimits limits, AcceptCheck check = nullptr) {
    server = std::make_unique<SeqpacketServer>("t", metrics, std::move(h), std::move(check), nullptr, limits);
    ASSERT_TRUE(server->start().ok());
    ASSERT_TRUE(server->listen(path(), 0600, "pod-a").ok());
  }
  UniqueFd dial() {
    auto c = wire::connectUnix(path());
    EXPECT_TRUE(c.ok());
    return c.ok() ? std::move(c.value()) : UniqueFd();
  }
  json call(int fd, const json& req, std::chrono::milliseconds t = 2s) {
    auto r = wire::call(fd, req, {}, t);
    return r.ok() ? r->body : json{{"transport_error", r.error().code}};
  }
  // Polls `pred` for up to 3 s.
  template <class F>
  bool eventually(F pred) {
    for (int i = 0; i < 300; ++i) {
      if (pred()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return pred();
  }
};

Reply echo(wire::Message& m, const ConnInfo&) { return proto::okReply(m.body); }

TEST_F(ServerTest, ConnectionsPerPodAreCappedWithAClearReply) {
  ServerLimits l;
  l.maxConnectionsPerTag = 3;
  start(echo, l);
  std::vector<UniqueFd> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(dial());
    EXPECT_EQ(call(held.back().get(), request("x"))["ok"], true);
  }
  auto extra = dial();
  auto r = call(extra.get(), request("x", 9));
  EXPECT_EQ(r["error"]["code"], "resource_exhausted");
  EXPECT_EQ(r["id"], 9);
  EXPECT_EQ(metrics.get("colo_wire_connections_rejected_total", {{"socket", "t"}, {"reason", "per_pod_cap"}}), 1);
  held.pop_back();  // a slot frees up
  EXPECT_TRUE(eventually([&] {
    auto c = dial();
    return call(c.get(), request("x"))["ok"] == true;
  }));
}

TEST_F(ServerTest, APeerThatDoesNotReadIsCutOffAndOthersAreServed) {
  ServerLimits l;
  l.maxQueuedReplies = 4;
  start([](wire::Message& m, const ConnInfo&) -> Reply {
    json r = proto::okReply(m.body);
    r["pad"] = std::string(32 * 1024, 'x');
    return r;
  }, l);
  auto flooder = dial();
  const std::string req = request("x").dump();
  bool cut = false;
  for (int i = 0; i < 10000 && !cut; ++i) {
    if (::send(flooder.get(), req.data(), req.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
      if (errno == EAGAIN) std::this_thread::sleep_for(1ms);
      else cut = true;  // EPIPE / ECONNRESET: the server closed it
    }
  }
  EXPECT_TRUE(cut || eventually([&] { return metrics.get("colo_wire_peers_cut_total", {{"socket", "t"}, {"reason", "slow_reader"}}) >= 1; }));
  EXPECT_GE(metrics.get("colo_wire_peers_cut_total", {{"socket", "t"}, {"reason", "slow_reader"}}), 1);
  auto other = dial();
  EXPECT_EQ(call(other.get(), request("x"))["ok"], true);
}

TEST_F(ServerTest, QueuedReplyBytesArePerPod) {
  ServerLimits l;
  l.maxQueuedReplies = 1000;
  l.maxQueuedBytesPerTag = 256 * 1024;
  start([](wire::Message& m, const ConnInfo&) -> Reply {
    json r = proto::okReply(m.body);
    r["pad"] = std::string(60 * 1024, 'x');
    return r;
  }, l);
  auto c = dial();
  int small = 4096;
  ::setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  const std::string req = request("x").dump();
  for (int i = 0; i < 200; ++i) {
    if (::send(c.get(), req.data(), req.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN) break;
  }
  EXPECT_TRUE(eventually([&] { return metrics.get("colo_wire_peers_cut_total", {{"socket", "t"}, {"reason", "memory"}}) >= 1; }));
}

TEST_F(ServerTest, PendingRequestsPerPodAreCapped) {
  ServerLimits l;
  l.maxPendingPerTag = 2;
  int pipefd[2];
  ASSERT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  start([&](wire::Message& m, const ConnInfo&) -> Reply {
    Reply::Wait w;
    w.fd.reset(::dup(rd.get()));  // never readable: a connect that never answers
    w.events = POLLIN;
    w.deadline = Reply::Clock::now() + 5s;
    w.done = [req = m.body](UniqueFd, short rev) -> Reply { return proto::errorReply(req, rev ? proto::ErrorCode::Internal : proto::ErrorCode::Timeout, "deadline"); };
    return Reply::whenReady(std::move(w));
  }, l);
  auto a = dial(), b = dial(), c = dial();
  const std::string req = request("slow").dump();
  ASSERT_GT(::send(a.get(), req.data(), req.size(), MSG_NOSIGNAL), 0);
  ASSERT_GT(::send(b.get(), req.data(), req.size(), MSG_NOSIGNAL), 0);
  std::this_thread::sleep_for(100ms);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(call(c.get(), request("slow"))["error"]["code"], "resource_exhausted");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);  // at once, not after the others' deadline
  EXPECT_EQ(metrics.get("colo_wire_resource_exhausted_total", {{"socket", "t"}, {"cap", "pending"}}), 1);
}

TEST_F(ServerTest, WaitsEndAtTheirDeadlineWithoutHoldingTheLoop) {
  int pipefd[2];
  ASSERT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  start([&](wire::Message& m, const ConnInfo&) -> Reply {
    if (m.body["op"] != "slow") return proto::okReply(m.body);
    Reply::Wait w;
    w.fd.reset(::dup(rd.get()));
    w.events = POLLIN;
    w.deadline = Reply::Clock::now() + 1500ms;
    w.done = [req = m.body](UniqueFd, short rev) -> Reply { return proto::errorReply(req, rev ? proto::ErrorCode::Internal : proto::ErrorCode::Timeout, "deadline"); };
    return Reply::whenReady(std::move(w));
  }, {});
  auto slow = dial(), fast = dial();
  const std::string req = request("slow").dump();
  ASSERT_GT(::send(slow.get(), req.data(), req.size(), MSG_NOSIGNAL), 0);
  // The other connection is answered while the wait is still pending (not after it: a loop that
  // held would answer `slow` first). No wall-clock bound: sanitizer builds and a loaded CI runner
  // are slow, and the order is what matters.
  EXPECT_EQ(call(fast.get(), request("hello"))["ok"], true);
  pollfd p{slow.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "the wait ended before the other connection was answered";
  ASSERT_TRUE(wire::waitReadable(slow.get(), 5s).ok());
  EXPECT_EQ(wire::recv(slow.get())->body["error"]["code"], "timeout");
}

TEST_F(ServerTest, WorkerShareIsPerPod) {
  ServerLimits l;
  l.workers = 1;
  l.workerShare = 1;
  std::latch release(1);
  start([&](wire::Message& m, const ConnInfo&) -> Reply {
    return Reply::later([&release, req = m.body] {
      release.wait();
      return Reply(proto::okReply(req));
    });
  }, l);
  auto a = dial(), b = dial();
  const std::string req = request("slow").dump();
  ASSERT_GT(::send(a.get(), req.data(), req.size(), MSG_NOSIGNAL), 0);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(call(b.get(), request("slow"))["error"]["code"], "resource_exhausted");
  EXPECT_EQ(metrics.get("colo_wire_resource_exhausted_total", {{"socket", "t"}, {"cap", "workers"}}), 1);
  release.count_down();
  ASSERT_TRUE(wire::waitReadable(a.get(), 2s).ok());
  EXPECT_EQ(wire::recv(a.get())->body["ok"], true);
}

TEST_F(ServerTest, IdleConnectionsAreClosedListenersAreNot) {
  ServerLimits l;
  l.idleTimeout = 200ms;
  start([](wire::Message& m, const ConnInfo&) -> Reply {
    Reply r(proto::okReply(m.body));
    r.keepOpen = m.body["op"] == "listen";
    return r;
  }, l);
  auto idle = dial(), listener = dial();
  EXPECT_EQ(call(idle.get(), request("hello"))["ok"], true);
  EXPECT_EQ(call(listener.get(), request("listen"))["ok"], true);
  ASSERT_TRUE(eventually([&] { return metrics.get("colo_wire_peers_cut_total", {{"socket", "t"}, {"reason", "idle"}}) == 1; }));
  char b;
  EXPECT_EQ(::recv(idle.get(), &b, 1, MSG_DONTWAIT), 0);  // closed by the server
  EXPECT_EQ(call(listener.get(), request("hello"))["ok"], true);
}

TEST_F(ServerTest, RefusedConnectionsAnswerOnceAndGo) {
  ServerLimits l;
  l.refusedLinger = 300ms;
  start(echo, l, [](const ConnInfo&) -> Status { return Error::make("permission_denied", "not this pod"); });
  auto c = dial();
  EXPECT_EQ(call(c.get(), request("x"))["error"]["code"], "permission_denied");
  ASSERT_TRUE(wire::waitReadable(c.get(), 2s).ok());
  char b;
  EXPECT_EQ(::recv(c.get(), &b, 1, MSG_DONTWAIT), 0);
  auto silent = dial();  // never asks: gone after the linger all the same
  ASSERT_TRUE(wire::waitReadable(silent.get(), 2s).ok());
  EXPECT_EQ(::recv(silent.get(), &b, 1, MSG_DONTWAIT), 0);
}

TEST_F(ServerTest, ListenersComeAndGoWithoutWaitingForTheLoop) {
  std::latch stuck(1), entered(1);
  start([&](wire::Message& m, const ConnInfo&) -> Reply {
    if (m.body["op"] == "block") {
      entered.count_down();
      stuck.wait();  // a handler that breaks the rules: the loop stalls
    }
    return proto::okReply(m.body);
  }, {});
  auto c = dial();
  const std::string req = request("block").dump();
  ASSERT_GT(::send(c.get(), req.data(), req.size(), MSG_NOSIGNAL), 0);
  entered.wait();
  const auto t0 = std::chrono::steady_clock::now();
  auto extra = wire::listenUnix("@colo-unit-" + std::to_string(::getpid()), 0);
  ASSERT_TRUE(extra.ok());
  server->addListener(std::move(extra.value()), "pod-b", "@colo-unit");
  server->removeListeners("pod-b");
  // The address is free again at once: a pod re-added in the same netns binds it.
  EXPECT_TRUE(wire::listenUnix("@colo-unit-" + std::to_string(::getpid()), 0).ok());
  server->removeListeners("pod-a");
  EXPECT_FALSE(wire::connectUnix(path()).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 100ms);
  std::this_thread::sleep_for(1100ms);
  EXPECT_GE(server->sinceHeartbeat(), 1000ms);  // what /readyz reports
  stuck.count_down();
  EXPECT_TRUE(eventually([&] { return server->sinceHeartbeat() < 1000ms; }));
}

TEST_F(ServerTest, WrongTypedFieldsInAHandlerAreBadRequest) {
  start([](wire::Message& m, const ConnInfo&) -> Reply {
    (void)m.body["n"].get<int>();  // throws type_error on a string
    return proto::okReply(m.body);
  }, {});
  auto c = dial();
  json req = request("x");
  req["n"] = "five";
  auto r = call(c.get(), req);
  EXPECT_EQ(r["error"]["code"], "bad_request");
  EXPECT_EQ(r["error"]["message"].get<std::string>().find("type_error"), std::string::npos);
}

TEST_F(ServerTest, StopDoesNotWaitForPeers) {
  start(echo, {});
  std::vector<UniqueFd> held;
  for (int i = 0; i < 20; ++i) held.push_back(dial());  // connected, never read
  const auto t0 = std::chrono::steady_clock::now();
  server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST(WorkerPool, QueueAndShareAreBounded) {
  WorkerPool pool(1, 3, 2);
  std::latch go(1), started(1);
  std::atomic<int> ran{0};
  auto job = [&] {
    go.wait();
    ++ran;
  };
  EXPECT_TRUE(pool.submit("a", [&] {
    started.count_down();
    job();
  }));
  started.wait();  // running, out of the queue
  EXPECT_TRUE(pool.submit("a", job));
  EXPECT_FALSE(pool.submit("a", job));  // a's share: one running, one queued
  EXPECT_TRUE(pool.submit("b", job));
  EXPECT_TRUE(pool.submit("c", job));
  EXPECT_FALSE(pool.submit("d", job));  // the queue (3) is full behind the running job
  go.count_down();
  for (int i = 0; i < 300 && ran < 4; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(ran, 4);
  EXPECT_EQ(pool.pending("a"), 0u);
}

// An `incoming` event goes through the listener connection's queue like a reply: a listener that
// reads none of them is cut off at the queue's bound (its name released, the dialer told
// unavailable), never written to around the queue; a listener that reads gets every event in order.
TEST_F(ServerTest, IncomingEventsGoThroughTheListenersQueueAndADeafListenerIsCutOff) {
  Config config;
  config.nodeName = "n";
  ASSERT_EQ(::mkdir((dir.path() + "/pods").c_str(), 0700), 0);
  Registry registry(dir.path());
  Pod pod;
  pod.key = "pod-a";
  pod.podNamespace = "ns";
  pod.name = "a";
  ASSERT_TRUE(registry.put(pod, UniqueFd()).ok());
  PodApi api(config, registry, metrics);
  ServerLimits l;
  l.maxQueuedReplies = 4;
  server = std::make_unique<SeqpacketServer>("t", metrics, [&](wire::Message& m, const ConnInfo& c) { return api.handle(m, c); }, nullptr,
                                             [&](const ConnInfo& c) { api.connectionClosed(c); }, l);
  // The loop calls into `api` whenever a connection closes, also while this test's sockets close
  // at its end: it stops before `api` and `registry` go (UBSan saw it walk a destroyed broker).
  struct StopFirst {
    std::unique_ptr<SeqpacketServer>& s;
    ~StopFirst() { s.reset(); }
  } stopFirst{server};
  api.broker().setEventSink([&](std::uint64_t id, Reply e) { return server->post(id, std::move(e)); });
  ASSERT_TRUE(server->start().ok());
  ASSERT_TRUE(server->listen(path(), 0600, "pod-a").ok());
  auto dialReq = [](std::int64_t id) { return json{{"v", 1}, {"id", id}, {"op", "dial"}, {"target", "echo"}}; };

  // A listener that reads: each dial's event arrives after the listen reply, in order.
  auto reader = dial();
  ASSERT_EQ(call(reader.get(), {{"v", 1}, {"id", 1}, {"op", "listen"}, {"name", "echo"}})["ok"], true);
  auto dialer = dial();
  for (int i = 0; i < 3; ++i) {
    auto r = wire::call(dialer.get(), dialReq(10 + i), {}, 2s);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->body["ok"], true) << r->body.dump();
    ASSERT_TRUE(wire::waitReadable(reader.get(), 2s).ok());
    auto ev = wire::recv(reader.get());
    ASSERT_TRUE(ev.ok());
    EXPECT_EQ(ev->body["event"], "incoming");
    EXPECT_EQ(ev->fds.size(), 1u);
  }
  reader.reset();
  EXPECT_TRUE(eventually([&] { return call(dialer.get(), dialReq(20))["error"]["code"] == "not_found"; }));

  // A listener that never reads: dials succeed while the kernel and the queue take the events,
  // then the listener is cut off as a slow reader, its name goes, and the dialer hears why.
  auto deaf = dial();
  ASSERT_EQ(call(deaf.get(), {{"v", 1}, {"id", 1}, {"op", "listen"}, {"name", "echo"}})["ok"], true);
  int ok = 0;
  json last;
  for (int i = 0; i < 5000; ++i) {
    auto r = wire::call(dialer.get(), dialReq(100 + i), {}, 2s);
    ASSERT_TRUE(r.ok());
    if (r->body["ok"] != true) {
      last = r->body;
      break;
    }
    ++ok;
  }
  EXPECT_EQ(last["error"]["code"], "unavailable") << last.dump();
  EXPECT_GT(ok, static_cast<int>(l.maxQueuedReplies));  // the kernel's buffer, then the queue
  EXPECT_TRUE(eventually([&] { return call(dialer.get(), dialReq(9000))["error"]["code"] == "not_found"; }));
  EXPECT_EQ(metrics.get("colo_wire_peers_cut_total", {{"socket", "t"}, {"reason", "slow_reader"}}), 1);
  // What reached the listener before the cut: its listen reply, then events only, then the end.
  int events = 0;
  for (;;) {
    auto m = wire::recv(deaf.get());
    if (!m) break;
    if (m->body.contains("event")) ++events;
  }
  EXPECT_GE(events, ok - static_cast<int>(l.maxQueuedReplies));
  EXPECT_LE(events, ok);
}

class BrokerCaps : public ::testing::Test {
 protected:
  test::TempDir dir;
  Metrics metrics;
  Registry registry{dir.path()};
  Pod pod;
  void SetUp() override {
    pod.key = "k";
    pod.podNamespace = "ns";
    pod.name = "p";
  }
  static json listenReq(const std::string& n) { return {{"v", 1}, {"id", 1}, {"op", "listen"}, {"name", n}}; }
};

TEST_F(BrokerCaps, NamesPerPod) {
  Broker b(registry, metrics, BrokerLimits{2, 120});
  ConnInfo c;
  c.id = 1;
  EXPECT_EQ(b.listen(listenReq("a"), pod, c).body["ok"], true);
  EXPECT_EQ(b.listen(listenReq("b"), pod, c).body["ok"], true);
  EXPECT_EQ(b.listen(listenReq("c"), pod, c).body["error"]["code"], "resource_exhausted");
  b.connectionClosed(c);  // names go with their connection, and the cap frees up
  EXPECT_EQ(b.listen(listenReq("c"), pod, c).body["ok"], true);
}

TEST_F(BrokerCaps, ChannelSetUpsPerPod) {
  Broker b(registry, metrics, BrokerLimits{64, 2});
  const json req = {{"v", 1}, {"id", 1}, {"op", "channel"}, {"bytes", 65536}};
  EXPECT_TRUE(b.channel(req, pod, ConnInfo{}).deferred);
  EXPECT_TRUE(b.channel(req, pod, ConnInfo{}).deferred);
  EXPECT_EQ(b.channel(req, pod, ConnInfo{}).body["error"]["code"], "resource_exhausted");
  Pod other = pod;
  other.key = "k2";
  EXPECT_TRUE(b.channel(req, other, ConnInfo{}).deferred);  // another pod's share is its own
  // The deferred work makes real memory and its doorbells (memfd: the pod has no hugepages).
  auto r = b.channel(req, other, ConnInfo{}).deferred();
  EXPECT_EQ(r.body["memory"], "memfd");
  EXPECT_EQ(r.fds.size(), 3u);
}

TEST_F(BrokerCaps, WrongTypedRequestFieldsAreBadRequest) {
  Broker b(registry, metrics);
  ConnInfo c;
  EXPECT_EQ(b.listen({{"name", 5}}, pod, c).body["error"]["code"], "bad_request");
  EXPECT_EQ(b.dial({{"target", 5}}, pod, c).body["error"]["code"], "bad_request");
  EXPECT_EQ(b.channel({{"bytes", "big"}}, pod, ConnInfo{}).body["error"]["code"], "bad_request");
}

TEST(Admission, ThePeerNetnsComesFromTheConnectingProcess) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  int pidfd = -1;
  socklen_t len = sizeof(pidfd);
  if (::getsockopt(a.get(), SOL_SOCKET, 77 /* SO_PEERPIDFD */, &pidfd, &len) != 0) GTEST_SKIP() << "kernel before 6.5";
  UniqueFd owned(pidfd);
  ConnInfo c;
  c.pidfd = pidfd;
  c.cred.pid = ::getpid();
  auto id = PodApi::peerNetns(c);
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(*id, *netns::current());
  ConnInfo none;  // no pidfd (an old kernel): refused, never a PID lookup that could be raced
  EXPECT_EQ(PodApi::peerNetns(none).error().code, "permission_denied");
}

}  // namespace
}  // namespace colo::node

namespace colo::node {
namespace {

TEST(SmallBugs, AHugepageSizeNear2To64NeverWrapsToZero) {
  Metrics m;
  HugepageManager h(m, 2 << 20, 1ULL << 30);
  EXPECT_EQ(h.roundUp(1), 2u << 20);
  EXPECT_EQ(h.roundUp(2 << 20), 2u << 20);
  const auto huge = h.roundUp(std::numeric_limits<std::uint64_t>::max() - 5);
  EXPECT_GT(huge, 1ULL << 62);
  EXPECT_EQ(huge % (2 << 20), 0u);
}

TEST(SmallBugs, LongContainerIdsGetAShortDirectoryThatFitsASocketPath) {
  test::TempDir dir;
  Config config;
  config.runDir = dir.path() + "/run";
  Metrics m;
  SeqpacketServer server("t", m, [](wire::Message& msg, const ConnInfo&) -> Reply { return proto::okReply(msg.body); });
  HugepageManager h(m, 2 << 20, 0);
  EndpointManager e(config, server, h, m);
  EXPECT_EQ(e.dirName("8c0e6f7a-1b2c-4d5e-8f90-0123456789ab"), "8c0e6f7a-1b2c-4d5e-8f90-0123456789ab");
  const std::string longId(200, 'a'), otherId = std::string(199, 'a') + "b";
  const std::string name = e.dirName(longId);
  EXPECT_LT((e.dirFor(longId) + "/colo.sock").size(), sizeof(sockaddr_un::sun_path));
  EXPECT_EQ(name, e.dirName(longId));       // stable across restarts
  EXPECT_NE(name, e.dirName(otherId));      // distinct keys, distinct directories
  EXPECT_EQ(name.rfind(std::string(16, 'a') + "-", 0), 0u);
}

}  // namespace
}  // namespace colo::node
