// libcolo against a colo-node that answers with broken replies (a field missing or of the wrong
// type): every call fails with COLO_E_PROTOCOL and a message naming the field, never a crash or
// an exception through the C API. A real socket, a fake agent thread.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

#include "colo/colo.h"
#include "colo/common/wire.h"
#include "test_util.h"

namespace colo {
namespace {

using nlohmann::json;

// Answers each request with answer(request) (envelope added), and after a `listen` sends `event`
// when there is one, with one descriptor.
class FakeNode {
 public:
  FakeNode(std::function<json(const json&)> answer, json event = nullptr) : answer_(std::move(answer)), event_(std::move(event)) {
    path_ = dir_.path() + "/colo.sock";
    auto l = wire::listenUnix(path_, 0600);
    EXPECT_TRUE(l.ok());
    if (l) listener_ = std::move(*l);
    ::setenv("COLO_SOCKET", path_.c_str(), 1);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeNode() {
    stop_ = true;
    thread_.join();
    ::unsetenv("COLO_SOCKET");
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) continue;
      for (;;) {
        if (auto w = wire::waitReadable(conn.get(), std::chrono::milliseconds(50)); !w) {
          if (stop_) return;
          continue;
        }
        auto m = wire::recv(conn.get());
        if (!m) break;  // the client closed
        json r = answer_(m->body);
        r["v"] = 1;
        r["id"] = m->body["id"];
        (void)wire::send(conn.get(), r);
        if (m->body.value("op", "") == "listen" && !event_.is_null()) {
          int sv[2];
          ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
          UniqueFd a(sv[0]), b(sv[1]);
          const int fds[1] = {b.get()};
          (void)wire::send(conn.get(), event_, fds);
        }
      }
    }
  }

  test::TempDir dir_;
  std::string path_;
  UniqueFd listener_;
  std::function<json(const json&)> answer_;
  json event_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct Client {
  colo_client* c = nullptr;
  Client() { EXPECT_EQ(colo_open(&c), COLO_OK) << colo_last_error(); }
  ~Client() { colo_close(c); }
};

std::string lastError() { return colo_last_error(); }

TEST(ClientReplies, HelloWithAWrongTypedFieldIsAProtocolError) {
  FakeNode node([](const json&) {
    return json{{"ok", true}, {"identity", {{"namespace", "shop"}, {"name", "cart"}, {"uid", 5}, {"key", "k"}, {"node", "n"}, {"ips", json::array()}}}};
  });
  Client cl;
  colo_identity id{};
  EXPECT_EQ(colo_whoami(cl.c, &id), COLO_E_PROTOCOL);
  EXPECT_NE(lastError().find("'uid' must be a string"), std::string::npos) << lastError();
}

TEST(ClientReplies, AGoodErrorReplyKeepsItsCodeAndABrokenOneIsAProtocolError) {
  FakeNode node([](const json& req) {
    if (req.value("target", "") == "shop/taken") return json{{"ok", false}, {"error", {{"code", "permission_denied"}, {"message", "policy"}}}};
    return json{{"ok", false}, {"error", {{"code", 7}, {"message", "m"}}}};
  });
  Client cl;
  colo_conn conn{};
  EXPECT_EQ(colo_dial(cl.c, "shop/taken", 500, &conn), COLO_E_DENIED);
  EXPECT_EQ(lastError(), "policy");
  EXPECT_EQ(colo_dial(cl.c, "shop/echo", 500, &conn), COLO_E_PROTOCOL);
  EXPECT_NE(lastError().find("'code' must be a string"), std::string::npos) << lastError();
}

TEST(ClientReplies, DialListenAndChannelRepliesAreChecked) {
  FakeNode node([](const json& req) {
    const std::string op = req.value("op", "");
    if (op == "dial") return json{{"ok", true}, {"transport", "carrier-pigeon"}};
    if (op == "channel") return json{{"ok", true}, {"memory", "memfd"}, {"bytes", "lots"}, {"ringCapacity", 1}};
    return json{{"ok", true}, {"nme", "shop/echo"}};  // listen: a misspelt field
  });
  {
    Client cl;  // closed before the listener connects: the fake serves one connection at a time
    colo_conn conn{};
    EXPECT_EQ(colo_dial(cl.c, "shop/echo", 500, &conn), COLO_E_PROTOCOL);
    EXPECT_NE(lastError().find("unknown transport"), std::string::npos) << lastError();
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    UniqueFd a(sv[0]), b(sv[1]);
    colo_channel* ch = nullptr;
    EXPECT_EQ(colo_channel_open(cl.c, a.get(), 65536, &ch), COLO_E_PROTOCOL);
    EXPECT_NE(lastError().find("'bytes' must be a non-negative integer"), std::string::npos) << lastError();
  }
  colo_listener* l = nullptr;
  EXPECT_EQ(colo_listen("echo", &l), COLO_E_PROTOCOL);
  EXPECT_NE(lastError().find("missing 'name'"), std::string::npos) << lastError();
}

TEST(ClientReplies, AnIncomingEventWithABrokenPeerFailsAccept) {
  FakeNode node([](const json&) { return json{{"ok", true}, {"name", "shop/echo"}}; },
                json{{"v", 1}, {"event", "incoming"}, {"name", "shop/echo"}, {"peer", {{"namespace", "shop"}}}});
  colo_listener* l = nullptr;
  ASSERT_EQ(colo_listen("echo", &l), COLO_OK) << lastError();
  colo_conn conn{};
  EXPECT_EQ(colo_accept(l, 2000, &conn), COLO_E_PROTOCOL);
  EXPECT_NE(lastError().find("missing 'name'"), std::string::npos) << lastError();
  colo_listener_close(l);
}

}  // namespace
}  // namespace colo
