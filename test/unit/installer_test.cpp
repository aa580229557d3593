// The CNI installer on configuration files shaped like the primary CNIs' own.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "cni_conf.h"
#include "colo/common/files.h"
#include "test_util.h"

namespace colo::installer {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) { return std::string(COLO_FIXTURES) + "/cni-confs/" + name; }
std::string slurp(const std::string& p) { return *files::read(p); }

struct ConfDir {
  test::TempDir tmp;
  std::string put(const std::string& fixtureName, const std::string& as) {
    fs::copy_file(fixture(fixtureName), tmp.path() + "/" + as);
    return tmp.path() + "/" + as;
  }
};

class ChainEveryPrimary : public ::testing::TestWithParam<std::string> {};

TEST_P(ChainEveryPrimary, AppendsOnceAndUninstallRestoresTheOriginal) {
  ConfDir d;
  const std::string path = d.put(GetParam(), "10-primary.conflist");
  const std::string original = slurp(path);
  const ojson before = ojson::parse(original);

  auto r = chain(d.tmp.path(), ojson{{"failurePolicy", "open"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->action, "appended");
  const ojson after = ojson::parse(slurp(path));
  ASSERT_EQ(after["plugins"].size(), before["plugins"].size() + 1);
  for (std::size_t i = 0; i < before["plugins"].size(); ++i) EXPECT_EQ(after["plugins"][i], before["plugins"][i]) << "plugin " << i;
  const ojson& colo = after["plugins"].back();
  EXPECT_EQ(colo["type"], "colo-cni");
  EXPECT_EQ(colo["capabilities"]["io.kubernetes.cri.pod-annotations"], true);
  EXPECT_EQ(colo["failurePolicy"], "open");
  EXPECT_EQ(after.begin().key(), before.begin().key()) << "key order of the primary's file is kept";
  EXPECT_EQ(after["cniVersion"], before["cniVersion"]);

  auto again = chain(d.tmp.path(), ojson::object());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->action, "present");
  EXPECT_EQ(ojson::parse(slurp(path))["plugins"].size(), before["plugins"].size() + 1) << "idempotent";

  ASSERT_TRUE(unchain(d.tmp.path()).ok());
  EXPECT_EQ(slurp(path), original) << "byte for byte";
  EXPECT_FALSE(fs::exists(path + kBackupSuffix));
  EXPECT_FALSE(fs::exists(d.tmp.path() + "/" + kStateFile));
  EXPECT_FALSE(fs::exists(d.tmp.path() + "/.colo-cni.tmp"));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ChainEveryPrimary,
                         ::testing::Values("calico.conflist", "flannel.conflist", "kindnet.conflist", "cilium.conflist", "aws-vpc-cni.conflist"),
                         [](const auto& info) {
                           std::string n = info.param.substr(0, info.param.find('.'));
                           for (auto& c : n) if (c == '-') c = '_';
                           return n;
                         });

TEST(Installer, SingleConfBecomesAConflistAndComesBack) {
  ConfDir d;
  const std::string conf = d.put("bridge.conf", "10-bridge.conf");
  const std::string original = slurp(conf);
  auto r = chain(d.tmp.path(), ojson::object());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->action, "converted");
  EXPECT_EQ(r->file, d.tmp.path() + "/10-bridge.conflist");
  EXPECT_FALSE(fs::exists(conf)) << "the .conf would still win the lexical order";
  EXPECT_EQ(*activeConfig(d.tmp.path()), r->file);
  const ojson list = ojson::parse(slurp(r->file));
  EXPECT_EQ(list["name"], "mynet");
  EXPECT_EQ(list["cniVersion"], "1.0.0");
  EXPECT_EQ(list["plugins"][0]["type"], "bridge");
  EXPECT_FALSE(list["plugins"][0].contains("name"));
  EXPECT_EQ(list["plugins"][1]["type"], "colo-cni");
  ASSERT_TRUE(unchain(d.tmp.path()).ok());
  EXPECT_EQ(slurp(conf), original);
  EXPECT_FALSE(fs::exists(r->file));
}

TEST(Installer, UninstallAfterThePrimaryRewroteItsFileTakesOutOnlyOurEntry) {
  ConfDir d;
  const std::string path = d.put("calico.conflist", "10-calico.conflist");
  ASSERT_TRUE(chain(d.tmp.path(), ojson::object()).ok());
  ojson j = ojson::parse(slurp(path));
  j["plugins"][0]["mtu"] = 1450;  // the primary changed something meanwhile
  std::ofstream(path) << j.dump(2);
  ASSERT_TRUE(unchain(d.tmp.path()).ok());
  const ojson after = ojson::parse(slurp(path));
  EXPECT_FALSE(hasColo(after));
  EXPECT_EQ(after["plugins"][0]["mtu"], 1450) << "their change is kept";
  EXPECT_FALSE(fs::exists(path + kBackupSuffix));
}

TEST(Installer, AlreadyChainedIsLeftAsItIs) {
  ConfDir d;
  const std::string path = d.put("already-chained.conflist", "10-x.conflist");
  const std::string original = slurp(path);
  auto r = chain(d.tmp.path(), ojson::object());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->action, "present");
  EXPECT_EQ(slurp(path), original);
  ASSERT_TRUE(unchain(d.tmp.path()).ok());
  EXPECT_EQ(slurp(path), original) << "uninstall removes only what it added";
}

TEST(Installer, MalformedFileIsLeftUntouchedWithAClearError) {
  ConfDir d;
  const std::string path = d.put("malformed.conflist", "05-broken.conflist");
  const std::string original = slurp(path);
  auto r = chain(d.tmp.path(), ojson::object());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("05-broken.conflist is not valid JSON; left untouched"), std::string::npos) << r.error().message;
  EXPECT_EQ(slurp(path), original);
}

TEST(Installer, PicksTheLexicallyFirstConfigAsRuntimesDo) {
  ConfDir d;
  d.put("flannel.conflist", "20-flannel.conflist");
  d.put("calico.conflist", "10-calico.conflist");
  std::ofstream(d.tmp.path() + "/99-notes.txt") << "not a config";
  EXPECT_EQ(*activeConfig(d.tmp.path()), d.tmp.path() + "/10-calico.conflist");
  ASSERT_TRUE(chain(d.tmp.path(), ojson::object()).ok());
  EXPECT_TRUE(hasColo(ojson::parse(slurp(d.tmp.path() + "/10-calico.conflist"))));
  EXPECT_FALSE(hasColo(ojson::parse(slurp(d.tmp.path() + "/20-flannel.conflist"))));
}

TEST(Installer, EmptyDirectoryWaitsForThePrimary) {
  ConfDir d;
  auto r = chain(d.tmp.path(), ojson::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "not_found");
}

TEST(Installer, BinaryIsInstalledAtomicallyAndRemoved) {
  test::TempDir src, bin;
  std::ofstream(src.path() + "/colo-cni") << "#!/bin/sh\necho v2\n";
  std::ofstream(bin.path() + "/colo-cni") << "old";
  ASSERT_TRUE(installBinary(src.path() + "/colo-cni", bin.path()).ok());
  EXPECT_EQ(slurp(bin.path() + "/colo-cni"), "#!/bin/sh\necho v2\n");
  struct stat st{};
  ASSERT_EQ(::stat((bin.path() + "/colo-cni").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_FALSE(fs::exists(bin.path() + "/.colo-cni.tmp"));
  ASSERT_TRUE(removeBinary(bin.path()).ok());
  EXPECT_FALSE(fs::exists(bin.path() + "/colo-cni"));
  EXPECT_TRUE(removeBinary(bin.path()).ok()) << "idempotent";
}

TEST(Installer, FightDetector) {
  FightDetector f(3, std::chrono::seconds(60));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(f.reAdded(t0));
  EXPECT_FALSE(f.reAdded(t0 + std::chrono::seconds(100)));  // the first fell out of the window
  EXPECT_FALSE(f.reAdded(t0 + std::chrono::seconds(110)));
  EXPECT_TRUE(f.reAdded(t0 + std::chrono::seconds(120)));
}

}  // namespace
}  // namespace colo::installer
