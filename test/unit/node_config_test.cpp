#include <gtest/gtest.h>

#include <fstream>

#include "config.h"
#include "test_util.h"

namespace colo::node {
namespace {

TEST(NodeConfig, YamlThenFlags) {
  test::TempDir dir;
  const std::string file = dir.path() + "/c.yaml";
  std::ofstream(file) << "cniSocket: /a/cni.sock\nlogFormat: json\nnodeName: n1\n";
  auto p = parseArgs({"--config", file, "--node-name=n2", "--http-address", ":9"});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->config.cniSocket, "/a/cni.sock");
  EXPECT_EQ(p->config.logFormat, "json");
  EXPECT_EQ(p->config.nodeName, "n2");
  EXPECT_EQ(p->config.httpAddress, ":9");
  EXPECT_TRUE(validate(p->config).ok());
}

TEST(NodeConfig, UninstallSubcommand) {
  auto p = parseArgs({"uninstall", "--bpf-pin-dir", "/sys/fs/bpf/x"});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->uninstall);
  EXPECT_EQ(p->config.bpfPinDir, "/sys/fs/bpf/x");
  EXPECT_FALSE(parseArgs({"--log-level", "info", "uninstall"}).ok());
}

TEST(NodeConfig, ErrorsNameTheProblem) {
  EXPECT_NE(parseArgs({"--bogus", "1"}).error().message.find("--bogus"), std::string::npos);
  EXPECT_FALSE(parseArgs({"--cni-socket"}).ok());
  EXPECT_FALSE(parseArgs({"stray"}).ok());
  EXPECT_FALSE(parseArgs({"--config", "/nonexistent/colo.yaml"}).ok());
  EXPECT_NE(applyYaml("cniSockt: /x\n", {}).error().message.find("cniSockt"), std::string::npos);
  EXPECT_FALSE(applyYaml("cniSocket: [1, 2]\n", {}).ok());
  EXPECT_FALSE(applyYaml(": : :\n  - [", {}).ok());
  EXPECT_FALSE(applyYaml("- a\n- b\n", {}).ok());
  Config c;
  c.logFormat = "xml";
  EXPECT_FALSE(validate(c).ok());
  c = Config{};
  c.mode = "kubernetes";
  EXPECT_TRUE(validate(c).ok());
  c.mode = "cluster";
  EXPECT_NE(validate(c).error().message.find("'cluster'"), std::string::npos);
  c = Config{};
  c.watchTimeoutSeconds = "0";
  EXPECT_NE(validate(c).error().message.find("watchTimeoutSeconds"), std::string::npos);
  c = Config{};
  c.listPageSize = "12x";
  EXPECT_NE(validate(c).error().message.find("listPageSize"), std::string::npos);
  c = Config{};
  c.httpAddress = "nocolon";
  EXPECT_FALSE(validate(c).ok());
  c = Config{};
  c.hugepagesBudget = "a lot";
  EXPECT_NE(validate(c).error().message.find("'a lot'"), std::string::npos);
  c = Config{};
  c.endpointName = "a/b";
  EXPECT_FALSE(validate(c).ok());
  c = Config{};
  c.datapath = "maybe";
  EXPECT_NE(validate(c).error().message.find("'maybe'"), std::string::npos);
  c = Config{};
  c.bpfPinDir = "/tmp/colo";
  EXPECT_FALSE(validate(c).ok());
}

TEST(NodeConfig, PinDirPerNodeWithoutDots) {
  // bpffs refuses '.' in names; EKS-style node names have them.
  auto p = parseArgs({"--node-name", "ip-10-0-0-1.ec2.internal", "--bpf-pin-dir", "/sys/fs/bpf/colo-{node}"});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->config.bpfPinDir, "/sys/fs/bpf/colo-ip-10-0-0-1_ec2_internal");
  EXPECT_TRUE(validate(p->config).ok());
}

TEST(NodeConfig, MarkUninstallSubcommandAndChainStatus) {
  auto p = parseArgs({"mark-uninstall", "--pod-namespace", "kube-system", "--hook-selector", "app.kubernetes.io/instance=colo",
                      "--hook-timeout-seconds", "30"});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE(p->markUninstall);
  EXPECT_EQ(p->config.hookSelector, "app.kubernetes.io/instance=colo");
  EXPECT_TRUE(validate(p->config).ok());
  p->config.hookTimeoutSeconds = "0";
  EXPECT_FALSE(validate(p->config).ok());
  auto y = applyYaml("cniChainStatusFile: /run/colo/cni-chain.json\npodName: colo-x\npodUid: u-1\n", Config{});
  ASSERT_TRUE(y.ok()) << y.error().message;
  EXPECT_EQ(y->cniChainStatusFile, "/run/colo/cni-chain.json");
  EXPECT_EQ(y->podName, "colo-x");
}

}  // namespace
}  // namespace colo::node
