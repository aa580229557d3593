#include <fcntl.h>
#include <unistd.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <atomic>
#include <sys/stat.h>
#include <thread>
#include <set>

#include "colo/common/files.h"
#include "colo/common/spool.h"
#include "pods/pod_owner.h"
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
  p.netns = {42, 4, 7};
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
    ASSERT_TRUE(r.remove("b-2").ok());
  }
  Registry again(dir.path());
  auto n = again.load();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  auto p = again.findByAttachment("net", "c1", "eth0");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->netns.inode, 42u);
  EXPECT_EQ(p->netns.cookie, 7u);
  EXPECT_EQ(p->ips, std::vector<std::string>{"198.18.0.2/24"});
}

// Container IDs (the key when the runtime passes no pod UID) may have 256 characters: their state
// file must still fit a file name, with the temporary name it is written under.
TEST(Registry, KeysUpToTheContainerIdLimitArePersisted) {
  test::TempDir dir;
  const std::string k200(200, 'a'), k240 = "b" + std::string(239, '1'), k256 = "c" + std::string(255, '2');
  {
    Registry r(dir.path());
    ASSERT_TRUE(r.load().ok());
    for (const auto& k : {k200, k240, k256}) ASSERT_TRUE(r.put(samplePod(k, "c" + k.substr(0, 3)), UniqueFd()).ok()) << k.size();
    ASSERT_TRUE(r.remove(k240).ok());
    EXPECT_LT(r.fileFor(k256).size() - dir.path().size(), 60u);
  }
  // A file written under its full name by an older colo-node (keys of 201 to 240 characters) is
  // taken and renamed, not moved aside.
  ASSERT_TRUE(files::writeAtomic(dir.path() + "/pods/" + k240 + ".json", toJson(samplePod(k240, "old")).dump(), 0600).ok());
  Registry again(dir.path());
  auto n = again.load();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
  for (const auto& k : {k200, k240, k256}) EXPECT_TRUE(again.get(k).has_value()) << k.size();
  EXPECT_TRUE(::access(again.fileFor(k240).c_str(), F_OK) == 0);
  EXPECT_FALSE(::access((dir.path() + "/pods/" + k240 + ".json").c_str(), F_OK) == 0);
  ASSERT_TRUE(again.remove(k256).ok());
  Registry third(dir.path());
  EXPECT_EQ(*third.load(), 2u);
}

TEST(Registry, StateWithoutANetnsCookieLoadsWithCookieZero) {
  // Written by a colo-node before netns cookies: loaded, and the agent's restore then releases it.
  auto j = toJson(samplePod("a-1", "c1"));
  j.erase("netnsCookie");
  auto p = podFromJson(j);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->netns.inode, 42u);
  EXPECT_EQ(p->netns.cookie, 0u);
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
    Status detach(const Pod& pod) override {
      if (failDetach) return Error::make("io", "rmdir(/run/colo/pods/" + pod.key + "): Device or resource busy");
      if (attached[pod.key] > 0) --attached[pod.key];
      return {};
    }
    Status verify(const Pod& pod, int) override {
      if (broken.count(pod.key)) return Error::make("not_found", "/run/colo/pods/" + pod.key + "/colo.sock is missing");
      return {};
    }
    void annotationsChanged(const Pod& pod) override { changed.push_back(pod.key + ":" + annotation(pod.annotations, "colo.dev/splice")); }
    std::vector<std::string> changed;
    bool failDetach = false;
    std::set<std::string> broken;
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
  auto other = ref("cni.check", "other");
  other["annotations"] = {{"colo.dev/enabled", "true"}};  // opted in, yet not held: CHECK fails
  EXPECT_EQ(send(other)["error"]["code"], "not_found");
  // Not opted in and so never held (standalone): nothing to check, and CHECK says so.
  EXPECT_EQ(send(ref("cni.check", "other"))["checked"], "not opted in: nothing held");

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
  EXPECT_EQ(send({{"op", "cni.gc"}, {"validAttachments", json::array()}})["error"]["code"], "bad_request");
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

TEST_F(HandlerTest, ASpliceDeclarationChangeOnARunningPodReachesTheHooksWithoutReattaching) {
  options.holdDormant = true;
  restart();
  ASSERT_TRUE(send(addReq("c1", "u-1", {{"colo.dev/enabled", "false"}}), "/proc/self/ns/net")["ok"]);
  lifecycle->applyMeta(meta("u-1", {{"colo.dev/enabled", "true"}}));
  ASSERT_EQ(hooks.attached["u-1"], 1);
  lifecycle->applyMeta(meta("u-1", {{"colo.dev/enabled", "true"}, {"colo.dev/splice", "true"}}));
  lifecycle->applyMeta(meta("u-1", {{"colo.dev/enabled", "true"}, {"colo.dev/splice", "true"}}));  // the same again: nothing
  lifecycle->applyMeta(meta("u-1", {{"colo.dev/enabled", "true"}, {"colo.dev/splice", "false"}}));
  EXPECT_EQ(hooks.changed, (std::vector<std::string>{"u-1:true", "u-1:false"}));
  EXPECT_EQ(hooks.attached["u-1"], 1) << "the endpoint is not set up again for a splice change";
  EXPECT_EQ(registry->get("u-1")->annotations.value("colo.dev/splice", ""), "false");
  // On a dormant pod nothing is told (attach reads the declaration when colo turns on).
  lifecycle->applyMeta(meta("u-1", json::object()));
  lifecycle->applyMeta(meta("u-1", {{"colo.dev/splice", "true"}}));
  EXPECT_EQ(hooks.changed.size(), 2u);
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


TEST_F(HandlerTest, GcWithoutAListReleasesNothing) {
  ASSERT_TRUE(send(addReq("c1", "u-1"), "/proc/self/ns/net")["ok"]);
  for (json list : {json(nullptr), json("x")}) {
    json req = {{"op", "cni.gc"}, {"network", "net"}};
    if (!list.is_null()) req["validAttachments"] = list;
    auto r = send(req);
    ASSERT_TRUE(r["ok"]) << r.dump();
    EXPECT_EQ(r["removed"], json::array());
  }
  EXPECT_EQ(registry->size(), 1u);
  EXPECT_EQ(hooks.attached["u-1"], 1);
}

TEST_F(HandlerTest, AFailedReleaseIsKeptCountedAndRetried) {
  ASSERT_TRUE(send(addReq("c1", "u-1"), "/proc/self/ns/net")["ok"]);
  ASSERT_TRUE(send(addReq("c2", "u-2"), "/proc/self/ns/net")["ok"]);
  hooks.failDetach = true;  // a busy mount, a directory that will not go
  auto gc = send({{"op", "cni.gc"}, {"network", "net"}, {"validAttachments", {{{"containerID", "c2"}, {"ifname", "eth0"}}}}});
  ASSERT_TRUE(gc["ok"]) << gc.dump();
  EXPECT_EQ(gc["removed"], json::array()) << "not reported as done";
  EXPECT_EQ(gc["pending"], json({"u-1"}));
  ASSERT_TRUE(registry->get("u-1").has_value());
  EXPECT_TRUE(registry->get("u-1")->releasePending);
  EXPECT_EQ(metrics.get("colo_pod_release_failures_total", {{"cause", "gc"}}), 1);
  auto d = send(ref("cni.del", "c2"));  // DEL: durable (kept in the state dir) and pending
  EXPECT_TRUE(d["ok"]);
  EXPECT_EQ(d["pending"], true);
  EXPECT_EQ(send(ref("cni.check", "c1"), "/proc/self/ns/net")["error"]["code"], "not_found");
  restart();  // the pending releases survive a restart
  EXPECT_TRUE(registry->get("u-1")->releasePending);
  EXPECT_EQ(lifecycle->retryPending(), 2u);  // still failing: still pending
  hooks.failDetach = false;
  gc = send({{"op", "cni.gc"}, {"network", "net"}, {"validAttachments", json::array()}});
  EXPECT_EQ(gc["removed"].size(), 2u) << gc.dump();  // the next GC retries and finishes them
  EXPECT_EQ(registry->size(), 0u);
  EXPECT_EQ(lifecycle->retryPending(), 0u);
}

TEST_F(HandlerTest, TheSweepRetriesFailedReleases) {
  ASSERT_TRUE(send(addReq("c1", "u-1"), "/proc/self/ns/net")["ok"]);
  hooks.failDetach = true;
  EXPECT_EQ(send(ref("cni.del", "c1"))["pending"], true);
  hooks.failDetach = false;
  lifecycle->startSweep(std::chrono::milliseconds(10));
  for (int i = 0; i < 200 && registry->size() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(registry->size(), 0u);
}

TEST_F(HandlerTest, ADelThatCannotBePersistedIsNotReportedDone) {
  ASSERT_TRUE(send(addReq("c1", "u-1"), "/proc/self/ns/net")["ok"]);
  // The state file cannot be removed (as on a read-only state dir): the pod would come back.
  const std::string file = dir.path() + "/pods/u-1.json";
  std::filesystem::remove(file);
  std::filesystem::create_directories(file + "/x");
  auto d = send(ref("cni.del", "c1"));
  EXPECT_FALSE(d["ok"]);
  EXPECT_EQ(d["error"]["code"], "unavailable") << "colo-cni spools it";
}

TEST_F(HandlerTest, TwoAttachmentsInOneNetnsShareTheEndpoint) {
  ASSERT_TRUE(send(addReq("c1", "u-1"), "/proc/self/ns/net")["ok"]);
  auto second = addReq("c1", "u-1");
  second["attachment"]["ifname"] = "net1";
  second["attachment"]["network"] = "macvlan";
  auto r = send(second, "/proc/self/ns/net");
  ASSERT_TRUE(r["ok"]) << r.dump();
  EXPECT_EQ(r["shared"], true);
  EXPECT_EQ(r["optedIn"], true);
  EXPECT_EQ(hooks.attached["u-1"], 1) << "one endpoint, not two";
  auto check = ref("cni.check", "c1");
  check["attachment"]["ifname"] = "net1";
  check["attachment"]["network"] = "macvlan";
  EXPECT_TRUE(send(check, "/proc/self/ns/net")["ok"]);
  restart();  // the attachments are persisted
  EXPECT_EQ(registry->get("u-1")->attachments.size(), 2u);
  // The first DEL keeps the endpoint; it goes with the last attachment.
  EXPECT_EQ(send(ref("cni.del", "c1"))["shared"], true);
  EXPECT_EQ(registry->size(), 1u);
  auto del2 = ref("cni.del", "c1");
  del2["attachment"] = check["attachment"];
  EXPECT_EQ(send(del2)["removed"], true);
  EXPECT_EQ(registry->size(), 0u);
  // GC drops only the stale attachment of a pod that has another.
  ASSERT_TRUE(send(addReq("c1", "u-1"), "/proc/self/ns/net")["ok"]);
  ASSERT_TRUE(send(second, "/proc/self/ns/net")["ok"]);
  send({{"op", "cni.gc"}, {"network", "net"}, {"validAttachments", json::array()}});
  ASSERT_EQ(registry->size(), 1u);
  EXPECT_EQ(registry->get("u-1")->attachments.size(), 1u);
  EXPECT_EQ(registry->get("u-1")->network, "macvlan");
}

TEST_F(HandlerTest, CheckTellsTheTruth) {
  ASSERT_TRUE(send(addReq("c1", "u-1"), "/proc/self/ns/net")["ok"]);
  auto check = ref("cni.check", "c1");
  check["ips"] = {"198.18.0.4/24", "198.18.7.7/24"};  // a later plugin added an address: fine
  EXPECT_TRUE(send(check, "/proc/self/ns/net")["ok"]);
  check["ips"] = {"198.18.7.7/24"};
  EXPECT_EQ(send(check, "/proc/self/ns/net")["error"]["code"], "invalid_argument");
  check["ips"] = {"198.18.0.4/24"};
  EXPECT_EQ(send(check, "/proc/self/net/dev")["error"]["code"], "bad_netns");
  EXPECT_EQ(send(check)["error"]["code"], "bad_netns");
  hooks.broken.insert("u-1");  // colo.sock deleted, mount gone, map entry missing: the hooks say which
  auto r = send(check, "/proc/self/ns/net");
  EXPECT_EQ(r["error"]["code"], "not_found");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("colo.sock"), std::string::npos);
}

TEST_F(HandlerTest, OptInValuesNotUnderstoodAreLoggedAndTold) {
  options.holdDormant = true;
  restart();
  auto r = send(addReq("c1", "u-1", {{"colo.dev/enabled", "yes"}}), "/proc/self/ns/net");
  EXPECT_EQ(r["optedIn"], false);
  EXPECT_EQ(events, (std::vector<std::string>{"u-1:ColoOptInNotUnderstood"}));
  EXPECT_EQ(metrics.get("colo_opt_in_not_understood_total"), 1);
  EXPECT_EQ(lifecycle->applyMeta(meta("u-1", {{"colo.dev/enabled", "True"}})), PodChange::On);
  EXPECT_EQ(lifecycle->applyMeta(meta("u-1", {{"colo.dev/enabled", "0"}})), PodChange::Off);
}

TEST_F(HandlerTest, AListWithAnObjectWithoutUidReleasesNothingItMayName) {
  options.holdDormant = true;
  restart();
  ASSERT_TRUE(send(addReq("c1", "u-1"), "/proc/self/ns/net")["ok"]);
  EXPECT_EQ(lifecycle->syncAll({}, nowUnixMs() + 1, {"ns/web"}), 0u);
  EXPECT_TRUE(registry->get("u-1").has_value());
  EXPECT_EQ(lifecycle->syncAll({}, nowUnixMs() + 1, {"*"}), 0u);
  EXPECT_TRUE(registry->get("u-1").has_value());
  EXPECT_EQ(lifecycle->syncAll({}, nowUnixMs() + 1, {"ns/other"}), 1u);
}

TEST_F(HandlerTest, TheSpoolIsAppliedOnceAndNeverLate) {
  const std::string spoolDir = dir.path() + "/spool";
  struct stat st{};
  ASSERT_EQ(::stat("/proc/self/ns/net", &st), 0);
  auto self = netns::current();
  ASSERT_TRUE(self.ok());
  ASSERT_NE(self->cookie, 0u) << "kernel without SO_NETNS_COOKIE";
  auto spooledAdd = [&](const std::string& cid, const std::string& uid, std::uint64_t inode, std::uint64_t cookie = 0) {
    auto a = addReq(cid, uid);
    a["netnsPath"] = "/proc/self/ns/net";
    a["netnsInode"] = inode;
    a["netnsDevice"] = static_cast<std::uint64_t>(st.st_dev);
    a["netnsCookie"] = cookie ? cookie : self->cookie;
    a["optIn"] = true;
    a["writtenUnixMs"] = nowUnixMs();
    return a;
  };
  auto spooledDel = [&](const std::string& cid) {
    auto d = ref("cni.del", cid);
    d["writtenUnixMs"] = nowUnixMs();
    return d;
  };
  // Held before the agent went down; its DEL was missed.
  ASSERT_TRUE(send(addReq("gone", "u-0"), "/proc/self/ns/net")["ok"]);
  ASSERT_TRUE(spool::write(spoolDir, spooledDel("gone")).ok());
  // An ADD missed under failurePolicy open, in a netns that is still the same: adopted.
  ASSERT_TRUE(spool::write(spoolDir, spooledAdd("c1", "u-1", st.st_ino)).ok());
  // An ADD whose netns was replaced since: never adopted into the new one.
  ASSERT_TRUE(spool::write(spoolDir, spooledAdd("c2", "u-2", st.st_ino + 1)).ok());
  // Replaced by a netns that got the same inode and device back: the cookie tells them apart.
  ASSERT_TRUE(spool::write(spoolDir, spooledAdd("c4", "u-4", st.st_ino, self->cookie + 1)).ok());
  // No cookie (an older colo-cni, or it could not read one): not adoptable.
  auto noCookie = spooledAdd("c5", "u-5", st.st_ino);
  noCookie.erase("netnsCookie");
  ASSERT_TRUE(spool::write(spoolDir, noCookie).ok());
  // An ADD and then its DEL: nothing to do.
  ASSERT_TRUE(spool::write(spoolDir, spooledAdd("c3", "u-3", st.st_ino)).ok());
  ASSERT_TRUE(spool::write(spoolDir, spooledDel("c3")).ok());
  std::ofstream(spoolDir + "/junk.json") << "{";
  std::size_t applied = 0;
  lifecycle->run(PodOwner::Clock::now() + std::chrono::seconds(5), [&] { applied = handler->applySpool(spoolDir); });
  EXPECT_EQ(applied, 2u);
  EXPECT_FALSE(registry->get("u-0").has_value());
  ASSERT_TRUE(registry->get("u-1").has_value());
  EXPECT_TRUE(registry->get("u-1")->active);
  EXPECT_FALSE(registry->get("u-2").has_value());
  EXPECT_FALSE(registry->get("u-3").has_value());
  EXPECT_FALSE(registry->get("u-4").has_value());
  EXPECT_FALSE(registry->get("u-5").has_value());
  std::vector<std::string> problems;
  EXPECT_TRUE(spool::readAll(spoolDir, problems).empty()) << "every record is gone once applied";
  EXPECT_TRUE(std::filesystem::exists(spoolDir + "/junk.json.bad"));
  // Applied again (a crash before the unlink): a no-op.
  ASSERT_TRUE(spool::write(spoolDir, spooledAdd("c1", "u-1", st.st_ino)).ok());
  lifecycle->run(PodOwner::Clock::now() + std::chrono::seconds(5), [&] { applied = handler->applySpool(spoolDir); });
  EXPECT_EQ(applied, 0u);
  EXPECT_EQ(hooks.attached["u-1"], 1);
  // A DEL written before the pod's newer ADD does not release the new one.
  auto oldDel = spooledDel("c1");
  oldDel["writtenUnixMs"] = nowUnixMs() - 60000;
  ASSERT_TRUE(spool::write(spoolDir, oldDel).ok());
  lifecycle->run(PodOwner::Clock::now() + std::chrono::seconds(5), [&] { applied = handler->applySpool(spoolDir); });
  EXPECT_TRUE(registry->get("u-1").has_value());
  EXPECT_EQ(metrics.get("colo_spool_records_total", {{"op", "cni.del"}, {"result", "newer_add"}}), 1);
}

TEST(PodOwner, ACommandThatCannotStartByItsDeadlineNeverRuns) {
  PodOwner owner;
  std::atomic<bool> release{false}, started{false};
  std::thread busy([&] {
    owner.run(PodOwner::Clock::now() + std::chrono::seconds(5), [&] {
      started = true;
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  });
  // The owner is busy before the next command is asked for (a fixed sleep was not enough on a
  // loaded machine: the busy thread had not reached the owner yet).
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  bool ran = false;
  const auto t0 = PodOwner::Clock::now();
  EXPECT_FALSE(owner.run(t0 + std::chrono::milliseconds(50), [&] { ran = true; }));
  EXPECT_LT(PodOwner::Clock::now() - t0, std::chrono::seconds(2));
  release = true;
  busy.join();
  EXPECT_TRUE(owner.run(PodOwner::Clock::now() + std::chrono::seconds(5), [] {}));
  EXPECT_FALSE(ran) << "not applied late";
  // What a command throws reaches its caller; the owner goes on.
  EXPECT_THROW(owner.run(PodOwner::Clock::now() + std::chrono::seconds(5), [] { throw std::runtime_error("x"); }), std::runtime_error);
  EXPECT_TRUE(owner.run(PodOwner::Clock::now() + std::chrono::seconds(5), [] {}));
}

}  // namespace
}  // namespace colo::node
