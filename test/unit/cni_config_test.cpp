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
      {{"runtimeConfig", {{kAnnotationsCapability, {{"a", 1}}}}}},  {{"cni.dev/valid-attachments", {{{"containerID", 1}}}}},
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

TEST(PluginConfig, AnnotatedOptIn) {
  json j = base();
  EXPECT_FALSE(annotatedOptIn(*parseConfig(j.dump())).has_value());
  j["runtimeConfig"] = {{kAnnotationsCapability, {{kEnabledAnnotation, "true"}}}};
  EXPECT_EQ(annotatedOptIn(*parseConfig(j.dump())), true);
  j["runtimeConfig"] = {{kAnnotationsCapability, {{kEnabledAnnotation, "yes"}}}};
  EXPECT_EQ(annotatedOptIn(*parseConfig(j.dump())), false);
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
