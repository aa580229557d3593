#include <gtest/gtest.h>

#include "cni_args.h"
#include "plugin_config.h"
#include "spec_version.h"

namespace colo::cni {
namespace {

using nlohmann::json;

json base() { return {{"cniVersion", "1.0.0"}, {"name", "n"}, {"type", "colo-cni"}}; }

TEST(PluginConfig, Defaults) {
  auto c = parseConfig(base().dump());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->agentSocket, "/run/colo/cni.sock");
  EXPECT_EQ(c->failurePolicy, FailurePolicy::Open);
  EXPECT_EQ(c->timeout.count(), kDefaultTimeoutMs);
  EXPECT_FALSE(c->enableAll);
  EXPECT_FALSE(c->annotations.has_value());
}

TEST(PluginConfig, AllKeys) {
  json j = base();
  j.update({{"agentSocket", "/s"}, {"failurePolicy", "closed"}, {"timeoutMs", 2000}, {"enableAll", true}, {"logFile", "/l"},
            {"logLevel", "debug"}, {"somethingElse", {1, 2}}});
  auto c = parseConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.error().msg;
  EXPECT_EQ(c->agentSocket, "/s");
  EXPECT_EQ(c->failurePolicy, FailurePolicy::Closed);
  EXPECT_EQ(c->timeout.count(), 2000);
  EXPECT_TRUE(c->enableAll);
  EXPECT_EQ(c->logFile, "/l");
}

TEST(PluginConfig, WrongTypesAreInvalidConfig) {
  const std::vector<json> bad = {
      {{"agentSocket", 5}},        {{"failurePolicy", "sometimes"}}, {{"failurePolicy", true}}, {{"timeoutMs", "500"}},
      {{"timeoutMs", 0}},          {{"timeoutMs", 2001}},            {{"timeoutMs", 1.5}},      {{"enableAll", "true"}},
      {{"logFile", json::array()}}, {{"logLevel", "chatty"}},        {{"name", 3}},             {{"runtimeConfig", "x"}},
      {{"runtimeConfig", {{kAnnotationsCapability, "x"}}}},  {{"cni.dev/valid-attachments", {{{"containerID", 1}}}}},
      {{"agentSocket", ""}},
  };
  for (const auto& extra : bad) {
    json j = base();
    j.update(extra);
    auto c = parseConfig(j.dump());
    ASSERT_FALSE(c.ok()) << extra.dump();
    EXPECT_EQ(c.error().code, Code::InvalidConfig) << extra.dump();
  }
}

TEST(PluginConfig, VersionsAndDecoding) {
  EXPECT_EQ(parseConfig("not json").error().code, Code::DecodingFailure);
  EXPECT_EQ(parseConfig("[1]").error().code, Code::DecodingFailure);
  EXPECT_EQ(parseConfig(R"({"name":"n"})").error().code, Code::IncompatibleVersion);
  EXPECT_EQ(parseConfig(R"({"cniVersion":"0.2.0","name":"n"})").error().code, Code::IncompatibleVersion);
  EXPECT_EQ(parseConfig(R"({"cniVersion":"1.0.0"})").error().code, Code::InvalidConfig);
  for (auto v : kSupportedVersions) {
    json j = base();
    j["cniVersion"] = std::string(v);
    EXPECT_TRUE(parseConfig(j.dump()).ok()) << v;
  }
}

TEST(OptIn, ParseBoolTakesWhatGoTakes) {
  for (auto t : {"1", "t", "T", "TRUE", "true", "True"}) EXPECT_EQ(optin::parseBool(t), true) << t;
  for (auto f : {"0", "f", "F", "FALSE", "false", "False"}) EXPECT_EQ(optin::parseBool(f), false) << f;
  for (auto x : {"", "yes", "on", "tRUE", " true", "true ", "2", "enabled"}) EXPECT_FALSE(optin::parseBool(x).has_value()) << x;
}

TEST(OptIn, OneDecisionForBothSides) {
  using K = optin::Decision::Kind;
  EXPECT_EQ(optin::decide(nullptr, false).kind, K::Unknown);
  EXPECT_EQ(optin::decide(nullptr, true).kind, K::Yes);
  EXPECT_EQ(optin::decide(json::object(), false).kind, K::No);
  EXPECT_EQ(optin::decide(json::object(), true).kind, K::Yes);
  EXPECT_EQ(optin::decide({{kEnabledAnnotation, "TRUE"}}, false).kind, K::Yes);
  EXPECT_EQ(optin::decide({{kEnabledAnnotation, "0"}}, true).kind, K::No);  // the annotation wins over enableAll
  auto bad = optin::decide({{kEnabledAnnotation, "yes"}}, true);
  EXPECT_EQ(bad.kind, K::No);
  EXPECT_EQ(bad.badValue, "yes");
  EXPECT_EQ(optin::decide({{kEnabledAnnotation, true}}, false).badValue, "true");  // not a string: not understood
}

TEST(PluginConfig, AnnotationsFromTheRuntime) {
  json j = base();
  EXPECT_FALSE(parseConfig(j.dump())->annotations.has_value());
  EXPECT_EQ(optInOf(*parseConfig(j.dump())).kind, optin::Decision::Kind::Unknown);
  // containerd passes null for a pod without annotations: known, and none.
  j["runtimeConfig"] = {{kAnnotationsCapability, nullptr}};
  ASSERT_TRUE(parseConfig(j.dump()).ok());
  EXPECT_EQ(*parseConfig(j.dump())->annotations, json::object());
  EXPECT_EQ(optInOf(*parseConfig(j.dump())).kind, optin::Decision::Kind::No);
  j["runtimeConfig"] = {{kAnnotationsCapability, {{kEnabledAnnotation, "True"}, {"big", std::string(300000, 'x')}, {"n", 5}}}};
  auto c = parseConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.error().msg;
  EXPECT_EQ(*c->annotations, json({{kEnabledAnnotation, "True"}})) << "only colo.dev/ annotations are kept";
  EXPECT_TRUE(optInOf(*c).on());
  j["runtimeConfig"] = {{kAnnotationsCapability, 7}};
  EXPECT_EQ(parseConfig(j.dump()).error().code, Code::InvalidConfig);
}

TEST(PluginConfig, GcReadsBothAttachmentKeys) {
  json j = base();
  EXPECT_FALSE(parseConfig(j.dump())->validAttachments.has_value());
  j["cni.dev/attachments"] = {{{"containerID", "old"}, {"ifname", "eth0"}}};
  ASSERT_EQ(parseConfig(j.dump())->validAttachments->size(), 1u);
  EXPECT_EQ(parseConfig(j.dump())->validAttachments->at(0).containerId, "old");
  j["cni.dev/valid-attachments"] = {{{"containerID", "new"}, {"ifname", "eth0"}}};
  EXPECT_EQ(parseConfig(j.dump())->validAttachments->size(), 2u);
  j.erase("cni.dev/attachments");
  j["cni.dev/valid-attachments"] = json::array();
  ASSERT_TRUE(parseConfig(j.dump())->validAttachments.has_value()) << "an empty list is a list: every attachment is stale";
  j["cni.dev/attachments"] = {{{"ifname", "eth0"}}};
  EXPECT_EQ(parseConfig(j.dump()).error().code, Code::InvalidConfig);
}

TEST(PluginConfig, PeekVersion) {
  EXPECT_EQ(peekVersion(R"({"cniVersion":"0.4.0"})"), "0.4.0");
  EXPECT_EQ(peekVersion(R"({"cniVersion":"9.9.9"})"), "9.9.9");
  EXPECT_EQ(peekVersion(R"({"cniVersion":"x"})"), "");
  EXPECT_EQ(peekVersion("{"), "");
  EXPECT_EQ(peekVersion(""), "");
}

TEST(SpecVersion, Parse) {
  EXPECT_EQ(parseVersion("1.1.0"), (SpecVersion{1, 1, 0}));
  EXPECT_LT(*parseVersion("0.3.1"), *parseVersion("0.4.0"));
  for (auto s : {"", "1", "1.0", "1.0.0.0", "a.b.c", "1.0.0 ", "-1.0.0", "1..0"}) EXPECT_FALSE(parseVersion(s)) << s;
}

TEST(CniArgs, Parsing) {
  auto a = parseCniArgs("K8S_POD_UID=0e1d-ff;K8S_POD_NAMESPACE=ns;IgnoreUnknown=1;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc;X=1;");
  ASSERT_TRUE(a.ok()) << a.error().msg;
  EXPECT_EQ(a->podUid, "0e1d-ff");
  EXPECT_EQ(a->podNamespace, "ns");
  EXPECT_EQ(a->podName, "p");
  EXPECT_EQ(a->infraContainerId, "abc");
  EXPECT_TRUE(parseCniArgs("").ok());
  EXPECT_TRUE(parseCniArgs("IgnoreUnknown=TRUE;Y=2").ok());
  EXPECT_FALSE(parseCniArgs("IgnoreUnknown=0;Y=2").ok());
  EXPECT_FALSE(parseCniArgs("=v").ok());
  EXPECT_FALSE(parseCniArgs("a=b=c").ok());
  EXPECT_FALSE(parseCniArgs("K8S_POD_UID=a/b").ok());
  EXPECT_FALSE(parseCniArgs("K8S_POD_NAME=" + std::string(300, 'x')).ok());
}

}  // namespace
}  // namespace colo::cni
