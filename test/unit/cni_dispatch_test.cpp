// Every verb over every spec version, through the real dispatcher with a fake agent.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <map>

#include "colo/common/spool.h"
#include "dispatcher.h"
#include "test_util.h"

namespace colo::cni {
namespace {

using nlohmann::json;

struct FakeAgent {
  std::vector<json> requests;
  std::optional<AgentFailure> failure;
  std::optional<json> reply;  // else what colo-node answers the op
  json replyTo(const json& r) const {
    if (reply) return *reply;
    const std::string op = r.value("op", "");
    if (op == "cni.del") return {{"ok", true}, {"removed", true}, {"key", "k"}, {"pending", false}};
    if (op == "cni.check") return {{"ok", true}, {"key", "k"}, {"checked", "held"}};
    if (op == "cni.status") return {{"ok", true}, {"ready", true}, {"pods", 1}};
    if (op == "cni.gc") return {{"ok", true}, {"removed", json::array()}, {"pending", json::array()}};
    return {{"ok", true}, {"optedIn", true}, {"key", "k"}};
  }
};

class DispatchTest : public ::testing::Test {
 protected:
  std::map<std::string, std::string> env;
  FakeAgent agent;
  bool netnsOpens = true;
  test::TempDir tmp;
  std::string spoolDir = tmp.path() + "/spool";

  Dependencies deps() {
    Dependencies d;
    d.setupLogging = false;
    d.agent = [this](const PluginConfig&) {
      struct Client : AgentClient {
        FakeAgent* a;
        explicit Client(FakeAgent* f) : a(f) {}
        Expected<json, AgentFailure> call(json r, int) override {
          a->requests.push_back(r);
          if (a->failure) return *a->failure;
          return a->replyTo(r);
        }
      };
      return std::make_unique<Client>(&agent);
    };
    d.openNetns = [this](const std::string&) -> Expected<UniqueFd> {
      if (!netnsOpens) return Error::make("not_found", "no such netns");
      return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    };
    d.spoolDir = spoolDir;
    return d;
  }

  std::vector<nlohmann::json> spooled() {
    std::vector<std::string> problems;
    std::vector<json> out;
    for (auto& r : spool::readAll(spoolDir, problems)) out.push_back(r.body);
    return out;
  }

  void setVerb(const std::string& verb) {
    env = {{"CNI_COMMAND", verb}, {"CNI_PATH", "/opt/cni/bin"}};
    if (verb == "ADD" || verb == "DEL" || verb == "CHECK") {
      env["CNI_CONTAINERID"] = "c0ffee";
      env["CNI_NETNS"] = "/var/run/netns/x";
      env["CNI_IFNAME"] = "eth0";
      env["CNI_ARGS"] = "K8S_POD_UID=1f2e-3d;IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=shop";
    }
  }

  RunResult run(const json& config) { return run(config.dump()); }
  RunResult run(const std::string& stdinData) {
    auto getenv = [this](const char* n) -> std::optional<std::string> {
      auto it = env.find(n);
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    return dispatch(getenv, stdinData, deps());
  }

  static json config(const std::string& version, json extra = json::object()) {
    json c = {{"cniVersion", version}, {"name", "net"}, {"type", "colo-cni"}, {"enableAll", true}};
    c["prevResult"] = {{"cniVersion", version}, {"ips", {{{"address", "198.18.0.9/24"}}}}};
    c["cni.dev/valid-attachments"] = {{{"containerID", "c0ffee"}, {"ifname", "eth0"}}};
    c.update(extra);
    return c;
  }

  static json parse(const RunResult& r) { return r.out.empty() ? json() : json::parse(r.out); }
};

const std::vector<std::string> kVersions = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};

bool verbExists(const std::string& verb, const std::string& version) {
  if (verb == "CHECK") return version >= "0.4.0";
  if (verb == "STATUS" || verb == "GC") return version == "1.1.0";
  return true;
}

TEST_F(DispatchTest, EveryVerbOverEverySpecVersion) {
  for (const std::string verb : {"ADD", "DEL", "CHECK", "STATUS", "GC"}) {
    for (const auto& v : kVersions) {
      SCOPED_TRACE(verb + " " + v);
      setVerb(verb);
      agent.requests.clear();
      auto r = run(config(v));
      if (!verbExists(verb, v)) {
        EXPECT_EQ(r.exitCode, 1);
        EXPECT_EQ(parse(r)["code"], 1) << r.out;
        EXPECT_EQ(parse(r)["cniVersion"], v);
        EXPECT_TRUE(agent.requests.empty());
        continue;
      }
      EXPECT_EQ(r.exitCode, 0) << r.out;
      ASSERT_EQ(agent.requests.size(), 1u);
      EXPECT_EQ(agent.requests[0]["op"], "cni." + [&] { std::string s = verb; for (auto& c : s) c = static_cast<char>(std::tolower(c)); return s; }());
      if (verb == "ADD") {
        EXPECT_EQ(parse(r), config(v)["prevResult"]) << "prevResult passes through unchanged";
      } else {
        EXPECT_TRUE(r.out.empty()) << r.out;
      }
    }
  }
}

TEST_F(DispatchTest, VersionAnswersInTheAskedVersion) {
  setVerb("VERSION");
  for (const auto& v : kVersions) {
    auto r = run(json({{"cniVersion", v}}));
    EXPECT_EQ(r.exitCode, 0);
    EXPECT_EQ(parse(r)["supportedVersions"], json(kVersions));
    EXPECT_EQ(parse(r)["cniVersion"], v);
  }
  // A version colo-cni does not speak, or nothing at all: its own.
  for (const std::string in : {R"({"cniVersion":"0.2.0"})", "", "{"}) {
    auto r = run(in);
    EXPECT_EQ(r.exitCode, 0) << in;
    EXPECT_EQ(parse(r)["cniVersion"], "1.1.0") << in;
  }
}

TEST_F(DispatchTest, EveryErrorCarriesTheConfigVersion) {
  for (const auto& v : kVersions) {
    SCOPED_TRACE(v);
    setVerb("ADD");
    env.erase("CNI_NETNS");  // an environment error, found before the config is parsed
    EXPECT_EQ(parse(run(config(v)))["cniVersion"], v);
    setVerb("ADD");
    env["CNI_COMMAND"] = "FROB";
    EXPECT_EQ(parse(run(config(v)))["cniVersion"], v);
    setVerb("ADD");
    EXPECT_EQ(parse(run(config(v, {{"timeoutMs", "x"}})))["cniVersion"], v);  // a config error
    env["CNI_ARGS"] = "K8S_POD_UID=../x";
    EXPECT_EQ(parse(run(config(v)))["cniVersion"], v);
  }
  setVerb("ADD");
  auto r = run(std::string(R"({"cniVersion":"0.2.0","name":"n"})"));
  EXPECT_EQ(parse(r)["code"], 1);
  EXPECT_EQ(parse(r)["cniVersion"], "0.2.0") << "an unsupported version is still the config's";
}

TEST_F(DispatchTest, CniPathIsNeverNeeded) {
  for (const std::string verb : {"ADD", "DEL", "CHECK", "STATUS", "GC"}) {
    for (const auto& v : kVersions) {
      if (!verbExists(verb, v)) continue;
      SCOPED_TRACE(verb + " " + v);
      setVerb(verb);
      env.erase("CNI_PATH");
      auto r = run(config(v));
      EXPECT_EQ(r.exitCode, 0) << r.out;
    }
  }
}

TEST_F(DispatchTest, DelNeverFailsForAVariableItCannotUse) {
  for (const auto& v : kVersions) {
    for (const char* var : {"CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_PATH", "CNI_ARGS"}) {
      SCOPED_TRACE(v + " " + var);
      setVerb("DEL");
      env.erase(var);
      agent.requests.clear();
      auto r = run(config(v));
      EXPECT_EQ(r.exitCode, 0) << r.out;
      EXPECT_TRUE(r.out.empty());
    }
    setVerb("DEL");
    env["CNI_IFNAME"] = "a-name-longer-than-15";
    EXPECT_EQ(run(config(v)).exitCode, 0);
  }
}

TEST_F(DispatchTest, AddPassesPrevResultInConfigVersion) {
  setVerb("ADD");
  json c = config("0.4.0");
  c["prevResult"] = {{"cniVersion", "0.4.0"}, {"ips", {{{"version", "4"}, {"address", "198.18.0.7/24"}, {"interface", 1}}}}, {"dns", {{"nameservers", {"198.18.0.53"}}}}};
  auto r = run(c);
  ASSERT_EQ(r.exitCode, 0) << r.out;
  EXPECT_EQ(parse(r), c["prevResult"]);
  EXPECT_EQ(agent.requests[0]["ips"], json({"198.18.0.7/24"}));
  EXPECT_EQ(agent.requests[0]["pod"]["uid"], "1f2e-3d");
  EXPECT_EQ(agent.requests[0]["pod"]["namespace"], "shop");
  EXPECT_EQ(agent.requests[0]["attachment"]["network"], "net");
}

TEST_F(DispatchTest, AddWithoutPrevResultIsAnError) {
  setVerb("ADD");
  json c = config("1.0.0");
  c.erase("prevResult");
  auto r = run(c);
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_EQ(parse(r)["code"], 7);
  EXPECT_TRUE(agent.requests.empty());
}

TEST_F(DispatchTest, PodNotOptedInIsReportedButNeverFails) {
  // ADD and DEL reach the agent (which may hold the pod dormant); CHECK does not.
  for (const std::string verb : {"ADD", "CHECK", "DEL"}) {
    setVerb(verb);
    agent.requests.clear();
    json c = config("1.0.0", {{"enableAll", false}, {"runtimeConfig", {{kAnnotationsCapability, {{"other", "x"}}}}}});
    auto r = run(c);
    EXPECT_EQ(r.exitCode, 0) << verb << r.out;
    EXPECT_EQ(agent.requests.size(), verb == "CHECK" ? 0u : 1u) << verb;
    if (verb == "ADD") EXPECT_EQ(agent.requests[0]["optIn"], false);
  }
  // An explicit "false" wins over enableAll.
  setVerb("ADD");
  agent.requests.clear();
  auto r = run(config("1.0.0", {{"enableAll", true}, {"runtimeConfig", {{kAnnotationsCapability, {{kEnabledAnnotation, "false"}}}}}}));
  EXPECT_EQ(r.exitCode, 0);
  ASSERT_EQ(agent.requests.size(), 1u);
  EXPECT_EQ(agent.requests[0]["optIn"], false);
  EXPECT_EQ(agent.requests[0]["enableAll"], true);
  // The agent down or refusing never fails a pod that has not opted in, even under "closed".
  agent.failure = AgentFailure{AgentFailure::Kind::Unreachable, "unavailable", "connect: No such file or directory"};
  r = run(config("1.0.0", {{"failurePolicy", "closed"}, {"runtimeConfig", {{kAnnotationsCapability, {{kEnabledAnnotation, "false"}}}}}}));
  EXPECT_EQ(r.exitCode, 0) << r.out;
  EXPECT_EQ(parse(r), config("1.0.0")["prevResult"]);
}

TEST_F(DispatchTest, AnnotatedPodReachesAgentWithAnnotations) {
  setVerb("ADD");
  auto r = run(config("1.0.0", {{"enableAll", false}, {"runtimeConfig", {{kAnnotationsCapability, {{kEnabledAnnotation, "true"}}}}}}));
  EXPECT_EQ(r.exitCode, 0);
  ASSERT_EQ(agent.requests.size(), 1u);
  EXPECT_EQ(agent.requests[0]["annotations"][kEnabledAnnotation], "true");
  EXPECT_EQ(agent.requests[0]["optIn"], true);
}

TEST_F(DispatchTest, UnknownAnnotationsAskTheAgent) {
  setVerb("ADD");
  auto r = run(config("1.0.0", {{"enableAll", false}}));
  EXPECT_EQ(r.exitCode, 0);
  ASSERT_EQ(agent.requests.size(), 1u);
  EXPECT_TRUE(agent.requests[0]["optIn"].is_null());
  EXPECT_TRUE(agent.requests[0]["annotations"].is_null());
}

TEST_F(DispatchTest, FailurePolicyOpenLetsThePodGoOn) {
  for (auto kind : {AgentFailure::Kind::Unreachable, AgentFailure::Kind::Timeout, AgentFailure::Kind::Rejected}) {
    setVerb("ADD");
    agent.failure = AgentFailure{kind, "unavailable", "connect(/run/colo/cni.sock): No such file or directory"};
    auto r = run(config("1.0.0", {{"failurePolicy", "open"}}));
    EXPECT_EQ(r.exitCode, 0) << r.out;
    EXPECT_EQ(parse(r), config("1.0.0")["prevResult"]);
  }
}

TEST_F(DispatchTest, FailurePolicyClosedFailsWithTryAgainAndSocketPath) {
  setVerb("ADD");
  agent.failure = AgentFailure{AgentFailure::Kind::Unreachable, "not_found", "connect(/x/cni.sock): No such file or directory"};
  auto r = run(config("1.0.0", {{"failurePolicy", "closed"}, {"agentSocket", "/x/cni.sock"}}));
  EXPECT_EQ(r.exitCode, 1);
  auto e = parse(r);
  EXPECT_EQ(e["code"], 11);
  EXPECT_NE(e["details"].get<std::string>().find("/x/cni.sock"), std::string::npos);

  agent.failure = AgentFailure{AgentFailure::Kind::Timeout, "timeout", "no reply within 500 ms"};
  r = run(config("1.0.0", {{"failurePolicy", "closed"}}));
  EXPECT_EQ(parse(r)["code"], 11);
}

TEST_F(DispatchTest, AgentTypedErrorsSurviveTheHop) {
  setVerb("ADD");
  agent.failure = AgentFailure{AgentFailure::Kind::Rejected, "bad_netns", "descriptor is not a namespace"};
  auto r = run(config("1.0.0", {{"failurePolicy", "closed"}}));
  EXPECT_EQ(parse(r)["code"], 4);
  EXPECT_NE(parse(r)["msg"].get<std::string>().find("descriptor is not a namespace"), std::string::npos);
  setVerb("CHECK");
  agent.failure = AgentFailure{AgentFailure::Kind::Rejected, "not_found", "no pod"};
  r = run(config("1.0.0", {{"failurePolicy", "closed"}}));
  EXPECT_EQ(parse(r)["code"], 3);
}

// A reply colo-cni cannot read is a protocol failure with the field named, handled like an agent
// that could not be asked (failurePolicy decides), never an exception or a crash.
TEST_F(DispatchTest, AnUnreadableAgentReplyIsAClearProtocolError) {
  setVerb("ADD");
  agent.reply = json{{"ok", true}, {"optedIn", "yes"}, {"key", "k"}};
  auto r = run(config("1.0.0", {{"failurePolicy", "closed"}}));
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_EQ(parse(r)["code"], 11);
  EXPECT_NE(parse(r).dump().find("'optedIn' must be a boolean"), std::string::npos) << parse(r).dump();
  EXPECT_EQ(run(config("1.0.0", {{"failurePolicy", "open"}})).exitCode, 0);
  setVerb("CHECK");
  agent.reply = json{{"ok", true}, {"key", "k"}};  // no "checked"
  r = run(config("1.0.0", {{"failurePolicy", "closed"}}));
  EXPECT_EQ(parse(r)["code"], 11);
  EXPECT_NE(parse(r).dump().find("missing 'checked'"), std::string::npos) << parse(r).dump();
}

TEST_F(DispatchTest, DelAlwaysSucceedsWhenNothingCanBeUndone) {
  setVerb("DEL");
  env["CNI_NETNS"] = "";  // containerd's second DEL: no netns, no prevResult
  json c = config("1.0.0");
  c.erase("prevResult");
  agent.failure = AgentFailure{AgentFailure::Kind::Unreachable, "not_found", "no agent"};
  for (auto policy : {"open", "closed"}) {
    c["failurePolicy"] = policy;
    auto r = run(c);
    EXPECT_EQ(r.exitCode, 0) << r.out;
    EXPECT_TRUE(r.out.empty());
  }
  env["CNI_ARGS"] = "garbage";
  EXPECT_EQ(run(c).exitCode, 0);
}

TEST_F(DispatchTest, StatusUnderPolicies) {
  setVerb("STATUS");
  agent.failure = AgentFailure{AgentFailure::Kind::Unreachable, "not_found", "no agent"};
  EXPECT_EQ(run(config("1.1.0", {{"failurePolicy", "open"}})).exitCode, 0);
  auto r = run(config("1.1.0", {{"failurePolicy", "closed"}}));
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_EQ(parse(r)["code"], 50);
}

TEST_F(DispatchTest, GcForwardsValidAttachmentsUnderEitherKey) {
  for (const char* key : {"cni.dev/valid-attachments", "cni.dev/attachments"}) {
    SCOPED_TRACE(key);
    setVerb("GC");
    agent.requests.clear();
    json c = config("1.1.0");
    c.erase("cni.dev/valid-attachments");
    c[key] = {{{"containerID", "a1"}, {"ifname", "eth0"}}};
    agent.reply = json{{"ok", true}, {"removed", json::array()}, {"pending", json::array()}};
    auto r = run(c);
    EXPECT_EQ(r.exitCode, 0) << r.out;
    ASSERT_EQ(agent.requests.size(), 1u);
    EXPECT_EQ(agent.requests[0]["validAttachments"], json({{{"containerID", "a1"}, {"ifname", "eth0"}}}));
    EXPECT_EQ(agent.requests[0]["network"], "net");
  }
}

TEST_F(DispatchTest, GcWithoutAnyAttachmentListReleasesNothing) {
  for (auto policy : {"open", "closed"}) {
    setVerb("GC");
    agent.requests.clear();
    json c = config("1.1.0", {{"failurePolicy", policy}});
    c.erase("cni.dev/valid-attachments");
    auto r = run(c);
    EXPECT_EQ(r.exitCode, 0) << r.out;
    EXPECT_TRUE(agent.requests.empty()) << "colo-node is not asked to release anything";
  }
}

TEST_F(DispatchTest, MissingEnvironmentIsCode4) {
  for (const char* var : {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"}) {
    setVerb("ADD");
    env.erase(var);
    auto r = run(config("1.0.0"));
    EXPECT_EQ(r.exitCode, 1) << var;
    EXPECT_EQ(parse(r)["code"], 4) << var;
  }
  setVerb("ADD");
  env["CNI_COMMAND"] = "FROB";
  EXPECT_EQ(parse(run(config("1.0.0")))["code"], 4);
  setVerb("ADD");
  env["CNI_CONTAINERID"] = "../etc";
  EXPECT_EQ(parse(run(config("1.0.0")))["code"], 4);
  setVerb("ADD");
  env["CNI_IFNAME"] = "a-name-longer-than-15";
  EXPECT_EQ(parse(run(config("1.0.0")))["code"], 4);
}

TEST_F(DispatchTest, CniArgsInAnyOrderAndIgnoreUnknown) {
  setVerb("ADD");
  env["CNI_ARGS"] = "K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;FOO=bar;IgnoreUnknown=true;K8S_POD_NAMESPACE=shop";
  auto r = run(config("1.0.0"));
  EXPECT_EQ(r.exitCode, 0) << r.out;
  EXPECT_EQ(agent.requests.back()["pod"]["infraContainerID"], "abc");
  EXPECT_EQ(agent.requests.back()["pod"]["name"], "web");

  env["CNI_ARGS"] = "K8S_POD_NAME=web;FOO=bar";
  EXPECT_EQ(parse(run(config("1.0.0")))["code"], 4);
  env["CNI_ARGS"] = "IgnoreUnknown=1;K8S_POD_UID=../../etc";
  EXPECT_EQ(parse(run(config("1.0.0")))["code"], 4);
  env["CNI_ARGS"] = "novalue";
  EXPECT_EQ(parse(run(config("1.0.0")))["code"], 4);
}

TEST_F(DispatchTest, GarbageOnStdinNeverCrashes) {
  setVerb("ADD");
  for (const std::string in : {"", "{", "[]", "null", "\xff\xfe", R"({"cniVersion":7})", R"({"cniVersion":"9.9.9","name":"n"})",
                               R"({"cniVersion":"1.0.0"})", R"({"cniVersion":"1.0.0","name":"n","prevResult":[]})"}) {
    auto r = run(in);
    EXPECT_EQ(r.exitCode, 1) << in;
    auto e = parse(r);
    EXPECT_TRUE(e.contains("code") && e.contains("msg")) << r.out;
  }
  EXPECT_EQ(parse(run(std::string("{")))["code"], 6);
  EXPECT_EQ(parse(run(std::string(R"({"cniVersion":"9.9.9","name":"n"})")))["code"], 1);
}

TEST_F(DispatchTest, NetnsThatCannotBeOpenedFollowsPolicy) {
  setVerb("ADD");
  netnsOpens = false;
  EXPECT_EQ(run(config("1.0.0", {{"failurePolicy", "open"}})).exitCode, 0);
  auto r = run(config("1.0.0", {{"failurePolicy", "closed"}}));
  EXPECT_EQ(parse(r)["code"], 4);
  EXPECT_TRUE(agent.requests.empty());
}

}  // namespace
}  // namespace colo::cni

namespace colo::cni {
namespace {

json annotated(const std::string& version, json annotations, json extra = json::object()) {
  json c = {{"cniVersion", version}, {"name", "net"}, {"type", "colo-cni"}};
  c["prevResult"] = {{"cniVersion", version}, {"ips", {{{"address", "198.18.0.9/24"}}}}};
  c["runtimeConfig"] = {{kAnnotationsCapability, annotations}};
  c.update(extra);
  return c;
}

TEST_F(DispatchTest, NullAnnotationsNeverFailAPodThatDidNotOptIn) {
  // containerd passes null for a pod without annotations; the agent is down; policy closed.
  agent.failure = AgentFailure{AgentFailure::Kind::Unreachable, "unavailable", "connect: No such file or directory"};
  for (const std::string verb : {"ADD", "CHECK", "DEL"}) {
    for (const auto& v : kVersions) {
      if (!verbExists(verb, v)) continue;
      SCOPED_TRACE(verb + " " + v);
      setVerb(verb);
      auto r = run(annotated(v, nullptr, {{"failurePolicy", "closed"}}));
      EXPECT_EQ(r.exitCode, 0) << r.out;
      if (verb == "ADD") EXPECT_EQ(parse(r), annotated(v, nullptr)["prevResult"]);
    }
  }
  EXPECT_TRUE(spooled().size() <= 5u) << "only DELs are spooled for such a pod";
  for (const auto& rec : spooled()) EXPECT_EQ(rec["op"], "cni.del");
}

TEST_F(DispatchTest, OptInTakesWhatParseBoolTakes) {
  for (const auto& v : kVersions) {
    for (const std::string on : {"1", "t", "T", "TRUE", "true", "True"}) {
      setVerb("ADD");
      agent.requests.clear();
      ASSERT_EQ(run(annotated(v, {{kEnabledAnnotation, on}})).exitCode, 0);
      ASSERT_EQ(agent.requests.size(), 1u);
      EXPECT_EQ(agent.requests[0]["optIn"], true) << on;
    }
    for (const std::string off : {"0", "f", "FALSE", "False", "yes", "on", "enabled", ""}) {
      setVerb("ADD");
      agent.requests.clear();
      agent.failure = AgentFailure{AgentFailure::Kind::Unreachable, "unavailable", "down"};
      // Not opted in (and "yes" is not understood): never fails, never spooled, whatever the policy.
      auto r = run(annotated(v, {{kEnabledAnnotation, off}}, {{"failurePolicy", "closed"}, {"enableAll", true}}));
      EXPECT_EQ(r.exitCode, 0) << off << r.out;
      ASSERT_EQ(agent.requests.size(), 1u);
      EXPECT_EQ(agent.requests[0]["optIn"], false) << off;
      agent.failure.reset();
    }
  }
  EXPECT_TRUE(spooled().empty());
}

TEST_F(DispatchTest, OnlyColoAnnotationsCrossTheHop) {
  setVerb("ADD");
  auto r = run(annotated("1.0.0", {{kEnabledAnnotation, "true"}, {"colo.dev/hugepages", "4Mi"}, {"huge", std::string(200000, 'x')}}));
  ASSERT_EQ(r.exitCode, 0) << r.out;
  EXPECT_EQ(agent.requests[0]["annotations"], json({{kEnabledAnnotation, "true"}, {"colo.dev/hugepages", "4Mi"}}));
}

TEST_F(DispatchTest, CheckVerdictOfAReachableAgentStandsUnderEveryPolicy) {
  for (const auto& v : {"0.4.0", "1.0.0", "1.1.0"}) {
    for (auto policy : {"open", "closed"}) {
      SCOPED_TRACE(std::string(v) + " " + policy);
      setVerb("CHECK");
      agent.failure = AgentFailure{AgentFailure::Kind::Rejected, "invalid_argument", "held with a different network namespace"};
      auto r = run(config(v, {{"failurePolicy", policy}}));
      EXPECT_EQ(r.exitCode, 1);
      EXPECT_EQ(parse(r)["code"], 7);
      EXPECT_EQ(parse(r)["cniVersion"], v);
      agent.failure = AgentFailure{AgentFailure::Kind::Rejected, "not_found", "colo.sock is missing"};
      r = run(config(v, {{"failurePolicy", policy}}));
      EXPECT_EQ(parse(r)["code"], 3);
      // Only an agent that cannot be asked is subject to the policy.
      agent.failure = AgentFailure{AgentFailure::Kind::Unreachable, "unavailable", "down"};
      r = run(config(v, {{"failurePolicy", policy}}));
      EXPECT_EQ(r.exitCode, std::string(policy) == "open" ? 0 : 1) << r.out;
      if (std::string(policy) == "closed") EXPECT_EQ(parse(r)["code"], 11);
      agent.failure.reset();
    }
  }
}

TEST_F(DispatchTest, CheckSendsWhatTheAgentNeedsToDecideOptIn) {
  setVerb("CHECK");
  ASSERT_EQ(run(config("1.0.0", {{"enableAll", false}})).exitCode, 0);
  ASSERT_EQ(agent.requests.size(), 1u);
  EXPECT_TRUE(agent.requests[0]["optIn"].is_null());
  EXPECT_EQ(agent.requests[0]["enableAll"], false);
  EXPECT_EQ(agent.requests[0]["ips"], json({"198.18.0.9/24"}));
}

TEST_F(DispatchTest, AddRefusedByAWorkingAgentFailsUnderEveryPolicy) {
  for (auto policy : {"open", "closed"}) {
    setVerb("ADD");
    agent.failure = AgentFailure{AgentFailure::Kind::Rejected, "invalid_argument", "pod shares the node's network namespace"};
    auto r = run(config("1.0.0", {{"failurePolicy", policy}}));
    EXPECT_EQ(r.exitCode, 1) << policy;
    EXPECT_EQ(parse(r)["code"], 7);
  }
  EXPECT_TRUE(spooled().empty());
}

TEST_F(DispatchTest, AddTheAgentCouldNotTakeIsSpooledUnderOpen) {
  for (const auto& v : kVersions) {
    std::filesystem::remove_all(spoolDir);
    setVerb("ADD");
    agent.failure = AgentFailure{AgentFailure::Kind::Timeout, "timeout", "no reply within 500 ms"};
    ASSERT_EQ(run(config(v, {{"failurePolicy", "open"}})).exitCode, 0);
    auto recs = spooled();
    ASSERT_EQ(recs.size(), 1u) << v;
    EXPECT_EQ(recs[0]["op"], "cni.add");
    EXPECT_EQ(recs[0]["attachment"]["containerID"], "c0ffee");
    EXPECT_EQ(recs[0]["netnsPath"], "/var/run/netns/x");
    EXPECT_TRUE(recs[0].contains("writtenUnixMs"));
    // Closed: the runtime is told, and retries; nothing to adopt later.
    std::filesystem::remove_all(spoolDir);
    EXPECT_EQ(run(config(v, {{"failurePolicy", "closed"}})).exitCode, 1);
    EXPECT_TRUE(spooled().empty());
    agent.failure.reset();
  }
}

TEST_F(DispatchTest, DelTheAgentCouldNotTakeIsSpooledOrFails) {
  for (const auto& v : kVersions) {
    std::filesystem::remove_all(spoolDir);
    setVerb("DEL");
    agent.failure = AgentFailure{AgentFailure::Kind::Unreachable, "unavailable", "connect: No such file or directory"};
    ASSERT_EQ(run(config(v)).exitCode, 0);
    // An agent that could not persist the release says "unavailable": spooled too.
    agent.failure = AgentFailure{AgentFailure::Kind::Rejected, "unavailable", "the release could not be persisted"};
    ASSERT_EQ(run(config(v)).exitCode, 0);
    auto recs = spooled();
    ASSERT_EQ(recs.size(), 2u) << v;
    EXPECT_EQ(recs[0]["op"], "cni.del");
    EXPECT_EQ(recs[1]["attachment"]["ifname"], "eth0");
    // Nowhere to record it: saying "done" would lose it.
    spoolDir = "/proc/colo-no-such-dir/spool";
    auto r = run(config(v));
    EXPECT_EQ(r.exitCode, 1);
    EXPECT_EQ(parse(r)["code"], 11);
    EXPECT_EQ(parse(r)["cniVersion"], v);
    spoolDir = tmp.path() + "/spool";
    // A refusal from a working agent (a malformed request) is not spooled, and DEL goes on.
    std::filesystem::remove_all(spoolDir);
    agent.failure = AgentFailure{AgentFailure::Kind::Rejected, "bad_request", "missing attachment"};
    EXPECT_EQ(run(config(v)).exitCode, 0);
    EXPECT_TRUE(spooled().empty());
    agent.failure.reset();
  }
}

}  // namespace
}  // namespace colo::cni
