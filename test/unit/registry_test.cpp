#include <fcntl.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "colo/common/files.h"
#include "pods/cni_handler.h"
#include "pods/registry.h"
#include "test_util.h"

namespace colo::node {
namespace {

using nlohmann::json;

Pod samplePod(const std::string& key, const std::string& cid) {
  Pod p;
  p.key = key;
  p.podNamespace = "ns";
  p.name = "p-" + key;
  p.uid = key;
  p.network = "net";
  p.containerId = cid;
  p.ifname = "eth0";
  p.netns = {42, 4};
  p.ips = {"198.18.0.2/24"};
  return p;
}

TEST(Registry, PersistsAcrossInstances) {
  test::TempDir dir;
  {
    Registry r(dir.path());
    ASSERT_TRUE(r.load().ok());
    ASSERT_TRUE(r.put(samplePod("a-1", "c1"), UniqueFd()).ok());
    ASSERT_TRUE(r.put(samplePod("b-2", "c2"), UniqueFd()).ok());
    ASSERT_TRUE(r.remove("b-2").has_value());
  }
  Registry again(dir.path());
  auto n = again.load();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  auto p = again.findByAttachment("net", "c1", "eth0");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->netns.inode, 42u);
  EXPECT_EQ(p->ips, std::vector<std::string>{"198.18.0.2/24"});
}

TEST(Registry, CorruptStateIsMovedAsideNotFatal) {
  test::TempDir dir;
  ASSERT_TRUE(files::makeDirs(dir.path() + "/pods", 0700).ok());
  std::ofstream(dir.path() + "/pods/x.json") << "{not json";
  std::ofstream(dir.path() + "/pods/y.json") << R"({"key":"../../etc"})";
  std::ofstream(dir.path() + "/pods/z.json.tmp.123") << "half";
  Registry r(dir.path());
  auto n = r.load();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/pods/x.json.bad"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/pods/z.json.tmp.123"));
}

TEST(Registry, RefusesUnsafeKeys) {
  test::TempDir dir;
  Registry r(dir.path());
  ASSERT_TRUE(r.load().ok());
  EXPECT_FALSE(r.put(samplePod("../x", "c1"), UniqueFd()).ok());
  EXPECT_FALSE(r.put(samplePod("..", "c1"), UniqueFd()).ok());
}

class HandlerTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  Metrics metrics;
  std::unique_ptr<Registry> registry;
  std::unique_ptr<PodLifecycle> lifecycle;
  std::unique_ptr<CniHandler> handler;
  // Counts what was applied, so a test sees colo turned on and off.
  struct CountingHooks final : PodHooks {
    std::map<std::string, int> attached;
    Status attach(Pod& pod, int, bool, std::vector<std::string>&) override {
      ++attached[pod.key];
      pod.endpointDir = "/run/colo/pods/" + pod.key;
      return {};
    }
    void detach(const Pod& pod) override { --attached[pod.key]; }
  } hooks;
  std::vector<std::string> events;
  CniOptions options;
  unsigned id = 0;

  void SetUp() override { restart(); }
  void restart() {
    handler.reset();
    registry = std::make_unique<Registry>(dir.path());
    ASSERT_TRUE(registry->load().ok());
    lifecycle = std::make_unique<PodLifecycle>(*registry, hooks, metrics);
    lifecycle->setEventSink([this](const Pod& p, const std::string&, const std::string& reason, const std::string&) {
      events.push_back(p.key + ":" + reason);
    });
    handler = std::make_unique<CniHandler>(*registry, *lifecycle, metrics, netns::Identity{0, 0}, options);  // this process's netns counts as a pod's
  }
  static PodMeta meta(const std::string& uid, json annotations) {
    PodMeta m;
    m.uid = uid;
    m.podNamespace = "ns";
    m.name = "web";
    m.annotations = std::move(annotations);
    m.serviceAccount = "sa-web";
    return m;
  }
  json send(json body, const char* fdPath = nullptr) {
    wire::Message m;
    body["v"] = 1;
    body["id"] = ++id;
    m.body = body;
    if (fdPath) m.fds.emplace_back(::open(fdPath, O_RDONLY | O_CLOEXEC));
    return handler->handle(m);
  }
  static json addReq(const std::string& cid, const std::string& uid, json annotations = {{"colo.dev/enabled", "true"}}) {
    return {{"op", "cni.add"},
            {"attachment", {{"network", "net"}, {"containerID", cid}, {"ifname", "eth0"}}},
            {"pod", {{"namespace", "ns"}, {"name", "web"}, {"uid", uid}}},
            {"ips", {"198.18.0.4/24"}},
            {"annotations", annotations}};
  }
  static json ref(const std::string& op, const std::string& cid) {
    return {{"op", op}, {"attachment", {{"network", "net"}, {"containerID", cid}, {"ifname", "eth0"}}}};
  }
};

TEST_F(HandlerTest, AddCheckDelLifecycle) {
  auto r = send(addReq("c1", "u-1"), "/proc/self/ns/net");
  ASSERT_TRUE(r["ok"]) << r.dump();
  EXPECT_EQ(r["optedIn"], true);
  EXPECT_EQ(registry->size(), 1u);
  EXPECT_TRUE(send(ref("cni.check", "c1"), "/proc/self/ns/net")["ok"]);
  auto wrongIps = ref("cni.check", "c1");
  wrongIps["ips"] = {"198.18.0.99/24"};
  EXPECT_EQ(send(wrongIps)["error"]["code"], "invalid_argument");
  EXPECT_EQ(send(ref("cni.check", "other"))["error"]["code"], "not_found");

  restart();  // a restarted agent still answers CHECK and DEL
  EXPECT_TRUE(send(ref("cni.check", "c1"), "/proc/self/ns/net")["ok"]);
  auto d = send(ref("cni.del", "c1"));
  EXPECT_TRUE(d["ok"]);
  EXPECT_EQ(d["removed"], true);
  d = send(ref("cni.del", "c1"));
  EXPECT_TRUE(d["ok"]);
  EXPECT_EQ(d["removed"], false);
  EXPECT_EQ(registry->size(), 0u);
  EXPECT_EQ(metrics.get("colo_pods"), 0);
}

TEST_F(HandlerTest, StaleDelForAReplacedSandboxKeepsTheNewOne) {
  ASSERT_TRUE(send(addReq("old", "u-1"), "/proc/self/ns/net")["ok"]);
  ASSERT_TRUE(send(addReq("new", "u-1"), "/proc/self/ns/net")["ok"]);
  EXPECT_EQ(send(ref("cni.del", "old"))["removed"], false);
  EXPECT_TRUE(registry->findByAttachment("net", "new", "eth0").has_value());
}

TEST_F(HandlerTest, NotOptedInIsNotHeld) {
  auto r = send(addReq("c1", "u-1", {{"colo.dev/enabled", "false"}}), "/proc/self/ns/net");
  EXPECT_TRUE(r["ok"]);
  EXPECT_EQ(r["optedIn"], false);
  r = send(addReq("c2", "u-2", nullptr), "/proc/self/ns/net");  // standalone, no annotations, no enableAll
  EXPECT_EQ(r["optedIn"], false);
  auto req = addReq("c3", "u-3", nullptr);
  req["optIn"] = true;  // enableAll
  EXPECT_EQ(send(req, "/proc/self/ns/net")["optedIn"], true);
  EXPECT_EQ(registry->size(), 1u);
}

TEST_F(HandlerTest, BadInputGetsTypedErrors) {
  EXPECT_EQ(send(addReq("c1", "u-1"))["error"]["code"], "bad_netns");                  // no fd
  EXPECT_EQ(send(addReq("c1", "u-1"), "/dev/null")["error"]["code"], "bad_netns");     // not a netns
  EXPECT_EQ(send(addReq("c1", "u-1"), "/proc/self/ns/uts")["error"]["code"], "bad_netns");
  EXPECT_EQ(send(addReq("../c", "u-1"), "/proc/self/ns/net")["error"]["code"], "invalid_argument");
  EXPECT_EQ(send(addReq("c1", "../../etc"), "/proc/self/ns/net")["error"]["code"], "invalid_argument");
  EXPECT_EQ(send({{"op", "cni.add"}})["error"]["code"], "bad_request");
  EXPECT_EQ(send({{"op", "cni.add"}, {"attachment", 5}})["error"]["code"], "bad_request");
  EXPECT_EQ(send({{"op", "cni.gc"}, {"network", "net"}})["error"]["code"], "bad_request");
  EXPECT_EQ(send({{"op", "cni.frob"}})["error"]["code"], "unknown_op");
  auto req = addReq("c1", "u-1");
  req["ips"] = {1, 2};
  EXPECT_EQ(send(req, "/proc/self/ns/net")["error"]["code"], "bad_request");
  EXPECT_EQ(registry->size(), 0u);
}

TEST_F(HandlerTest, GcRemovesOnlyInvalidAttachmentsOfItsNetwork) {
  ASSERT_TRUE(send(addReq("keep", "u-1"), "/proc/self/ns/net")["ok"]);
  ASSERT_TRUE(send(addReq("drop", "u-2"), "/proc/self/ns/net")["ok"]);
  auto other = addReq("othernet", "u-3");
  other["attachment"]["network"] = "other";
  ASSERT_TRUE(send(other, "/proc/self/ns/net")["ok"]);
  auto r = send({{"op", "cni.gc"}, {"network", "net"}, {"validAttachments", {{{"containerID", "keep"}, {"ifname", "eth0"}}}}});
  ASSERT_TRUE(r["ok"]) << r.dump();
  EXPECT_EQ(r["removed"], json({"u-2"}));
  EXPECT_EQ(registry->size(), 2u);
}

TEST_F(HandlerTest, KubernetesModeHoldsDormantPodsAndFollowsTheirAnnotation) {
  options.holdDormant = true;
  restart();
  auto r = send(addReq("c1", "u-1", {{"colo.dev/enabled", "false"}}), "/proc/self/ns/net");
  ASSERT_TRUE(r["ok"]) << r.dump();
  EXPECT_EQ(r["optedIn"], false);
  ASSERT_EQ(registry->size(), 1u);
  EXPECT_FALSE(registry->get("u-1")->active);
  EXPECT_EQ(hooks.attached["u-1"], 0);
  EXPECT_EQ(metrics.get("colo_pods_dormant"), 1);

  // The annotation turns on: colo is applied to the running pod, with the netns held since ADD.
  EXPECT_EQ(lifecycle->applyMeta(meta("u-1", {{"colo.dev/enabled", "true"}})), PodChange::On);
  EXPECT_TRUE(registry->get("u-1")->active);
  EXPECT_EQ(registry->get("u-1")->serviceAccount, "sa-web");
  EXPECT_EQ(hooks.attached["u-1"], 1);
  EXPECT_EQ(metrics.get("colo_pods"), 1);
  EXPECT_EQ(lifecycle->applyMeta(meta("u-1", {{"colo.dev/enabled", "true"}})), PodChange::Unchanged);  // the same again
  EXPECT_EQ(hooks.attached["u-1"], 1);
  // A new hugepage size sets the endpoint up again.
  lifecycle->applyMeta(meta("u-1", {{"colo.dev/enabled", "true"}, {"colo.dev/hugepages", "4Mi"}}));
  EXPECT_EQ(hooks.attached["u-1"], 1);
  EXPECT_TRUE(registry->get("u-1")->active);
  // Removed: off again, still held.
  EXPECT_EQ(lifecycle->applyMeta(meta("u-1", json::object())), PodChange::Off);
  EXPECT_FALSE(registry->get("u-1")->active);
  EXPECT_EQ(hooks.attached["u-1"], 0);
  EXPECT_EQ(events, (std::vector<std::string>{"u-1:ColoEnabled", "u-1:ColoDisabled"}));

  restart();  // dormant state survives a restart
  EXPECT_FALSE(registry->get("u-1")->active);
  lifecycle->apiDeleted("u-1");
  EXPECT_EQ(registry->size(), 0u);
  EXPECT_EQ(send(ref("cni.del", "c1"))["removed"], false);  // the late DEL finds nothing to undo
  EXPECT_EQ(lifecycle->applyMeta(meta("u-9", {{"colo.dev/enabled", "true"}})), PodChange::NotHeld);
}

TEST_F(HandlerTest, ListSyncReleasesPodsTheApiNoLongerHas) {
  options.holdDormant = true;
  restart();
  ASSERT_TRUE(send(addReq("c1", "u-1"), "/proc/self/ns/net")["ok"]);
  ASSERT_TRUE(send(addReq("c2", "u-2"), "/proc/self/ns/net")["ok"]);
  auto podman = addReq("c3", "");  // no Kubernetes UID: not the API's business
  ASSERT_TRUE(send(podman, "/proc/self/ns/net")["ok"]);
  EXPECT_EQ(lifecycle->syncAll({meta("u-2", {{"colo.dev/enabled", "true"}})}, nowUnixMs() + 1), 1u);
  EXPECT_FALSE(registry->get("u-1").has_value());
  EXPECT_TRUE(registry->get("u-2").has_value());
  EXPECT_TRUE(registry->get("c3").has_value());
  EXPECT_EQ(hooks.attached["u-1"], 0);
  // A pod added after the list began is kept even though the list does not have it.
  ASSERT_TRUE(send(addReq("c4", "u-4"), "/proc/self/ns/net")["ok"]);
  EXPECT_EQ(lifecycle->syncAll({}, nowUnixMs() - 60000), 0u);
  EXPECT_TRUE(registry->get("u-4").has_value());
}

TEST_F(HandlerTest, AddWithoutAnnotationsAsksTheApi) {
  options.holdDormant = true;
  int asked = 0;
  options.lookup = [&](const std::string& ns, const std::string& name, const std::string& uid, std::chrono::steady_clock::time_point deadline) -> std::optional<PodMeta> {
    ++asked;
    EXPECT_GT(deadline, std::chrono::steady_clock::now());
    if (name != "web" || ns != "ns") return std::nullopt;
    return meta(uid, {{"colo.dev/enabled", "true"}});
  };
  restart();
  auto r = send(addReq("c1", "u-1", nullptr), "/proc/self/ns/net");
  ASSERT_TRUE(r["ok"]) << r.dump();
  EXPECT_EQ(r["optedIn"], true);
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(registry->get("u-1")->serviceAccount, "sa-web");
  send(addReq("c2", "u-2", {{"colo.dev/enabled", "false"}}), "/proc/self/ns/net");  // annotations given: no lookup
  EXPECT_EQ(asked, 1);
  auto unknown = addReq("c3", "u-3", nullptr);
  unknown["pod"]["name"] = "other";
  r = send(unknown, "/proc/self/ns/net");
  EXPECT_EQ(r["optedIn"], false);  // the API did not know it: held dormant until the watch tells
  EXPECT_FALSE(registry->get("u-3")->active);
}

}  // namespace
}  // namespace colo::node
