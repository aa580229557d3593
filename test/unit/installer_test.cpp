// The CNI installer on configuration files shaped like the primary CNIs' own (test/fixtures/cni-confs).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "binary.h"
#include "chainer.h"
#include "colo/common/files.h"
#include "fight.h"
#include "test_util.h"

namespace colo::installer {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) { return std::string(COLO_FIXTURES) + "/cni-confs/" + name; }
std::string slurp(const std::string& p) { return *files::read(p); }
unsigned modeOf(const std::string& p) {
  struct stat st{};
  return ::lstat(p.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

struct ConfDir {
  test::TempDir tmp;
  std::string dir() const { return tmp.path(); }
  std::string put(const std::string& fixtureName, const std::string& as) {
    fs::copy_file(fixture(fixtureName), dir() + "/" + as);
    return dir() + "/" + as;
  }
  ChainOptions opts(ojson extra = ojson::object(), std::string confFile = "") const { return {dir(), std::move(confFile), std::move(extra)}; }
  // Every file of the directory with its bytes: what "the node is as it was" means.
  std::map<std::string, std::string> snapshot() const {
    std::map<std::string, std::string> m;
    for (const auto& e : fs::directory_iterator(dir())) m[e.path().filename().string()] = e.is_regular_file() ? slurp(e.path()) : "<dir>";
    return m;
  }
};

ChainResult mustChain(const ChainOptions& o) {
  auto r = chain(o);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : ChainResult{};
}

class ChainEveryConflist : public ::testing::TestWithParam<std::string> {};

TEST_P(ChainEveryConflist, AppendsOnceAndUninstallRestoresTheOriginal) {
  ConfDir d;
  const std::string path = d.put(GetParam(), "10-primary.conflist");
  const auto before = d.snapshot();
  const ojson was = ojson::parse(slurp(path));

  const auto r = mustChain(d.opts({{"failurePolicy", "open"}}));
  EXPECT_TRUE(r.chained);
  EXPECT_EQ(r.action, "appended");
  EXPECT_EQ(r.file, path);
  const ojson after = ojson::parse(slurp(path));
  ASSERT_EQ(after["plugins"].size(), was["plugins"].size() + 1);
  for (std::size_t i = 0; i < was["plugins"].size(); ++i) EXPECT_EQ(after["plugins"][i], was["plugins"][i]) << "plugin " << i;
  const ojson& colo = after["plugins"].back();
  EXPECT_EQ(colo["type"], "colo-cni");
  EXPECT_EQ(colo["capabilities"]["io.kubernetes.cri.pod-annotations"], true);
  EXPECT_EQ(colo["failurePolicy"], "open");
  EXPECT_EQ(after.begin().key(), was.begin().key()) << "key order of the primary's file is kept";
  EXPECT_EQ(after["cniVersion"], was["cniVersion"]);

  EXPECT_EQ(mustChain(d.opts({{"failurePolicy", "open"}})).action, "present") << "idempotent";
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_EQ(d.snapshot(), before) << "byte for byte, nothing else left";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ChainEveryConflist,
                         ::testing::Values("calico.conflist", "flannel.conflist", "kindnet.conflist", "cilium.conflist",
                                           "cilium-chained.conflist", "aws-vpc-cni.conflist", "antrea.conflist", "weave.conflist",
                                           "containerd.conflist", "podman.conflist"),
                         [](const auto& info) {
                           std::string n = info.param.substr(0, info.param.find('.'));
                           for (auto& c : n) if (c == '-') c = '_';
                           return n;
                         });

class ChainEverySingleConf : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

// A single-plugin file is never touched: colo writes X.colo.conflist, which runtimes load first.
TEST_P(ChainEverySingleConf, GeneratesItsOwnConflistAndLeavesThePrimaryAlone) {
  ConfDir d;
  const auto [fixtureName, as] = GetParam();
  const std::string path = d.put(fixtureName, as);
  const auto before = d.snapshot();
  const auto r = mustChain(d.opts());
  EXPECT_TRUE(r.chained);
  EXPECT_EQ(r.action, "generated");
  const std::string gen = d.dir() + "/" + fs::path(as).stem().string() + ".colo.conflist";
  EXPECT_EQ(r.file, gen);
  EXPECT_EQ(*activeConfig(d.dir()), gen) << "the generated conflist is what runtimes load";
  EXPECT_EQ(slurp(path), before.at(as)) << "the primary's file is untouched";
  const ojson list = ojson::parse(slurp(gen));
  const ojson conf = ojson::parse(before.at(as));
  EXPECT_EQ(list["name"], conf["name"]);
  EXPECT_EQ(list["cniVersion"], conf["cniVersion"]);
  EXPECT_EQ(list["plugins"][0]["type"], conf["type"]);
  EXPECT_FALSE(list["plugins"][0].contains("name"));
  EXPECT_EQ(list["plugins"][1]["type"], "colo-cni");
  EXPECT_EQ(mustChain(d.opts()).action, "present");
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_EQ(d.snapshot(), before);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ChainEverySingleConf,
                         ::testing::Values(std::pair{"bridge.conf", "10-bridge.conf"}, std::pair{"flannel-legacy.conf", "10-flannel.conf"},
                                           std::pair{"cilium-legacy.conf", "05-cilium.conf"},
                                           std::pair{"multus-thick.conf", "00-multus.conf"}, std::pair{"bridge.conf", "10-bridge.json"}),
                         [](const auto& info) {
                           std::string n = info.param.second;
                           for (auto& c : n) if (c == '-' || c == '.') c = '_';
                           return n;
                         });

TEST(Installer, ConfBesideConflistOfTheSameNameLosesNothing) {
  ConfDir d;
  d.put("bridge.conf", "10-x.conf");
  d.put("calico.conflist", "10-x.conflist");  // someone else's, not loaded (10-x.conf sorts first)
  const auto before = d.snapshot();
  const auto r = mustChain(d.opts());
  EXPECT_EQ(r.file, d.dir() + "/10-x.colo.conflist");
  EXPECT_EQ(slurp(d.dir() + "/10-x.conflist"), before.at("10-x.conflist"));
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_EQ(d.snapshot(), before);
}

TEST(Installer, ModeIsKept) {
  ConfDir d;
  const std::string path = d.put("calico.conflist", "10-calico.conflist");
  ::chmod(path.c_str(), 0600);
  mustChain(d.opts());
  EXPECT_EQ(modeOf(path), 0600u);
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_EQ(modeOf(path), 0600u);
  const std::string conf = d.put("bridge.conf", "05-bridge.conf");
  ::chmod(conf.c_str(), 0640);
  mustChain(d.opts());
  EXPECT_EQ(modeOf(d.dir() + "/05-bridge.colo.conflist"), 0640u) << "the generated file gets the primary's mode";
}

TEST(Installer, SymlinkedConfigStaysALink) {
  ConfDir d;
  test::TempDir elsewhere;
  fs::copy_file(fixture("calico.conflist"), elsewhere.path() + "/calico.conflist");
  const std::string original = slurp(elsewhere.path() + "/calico.conflist");
  fs::create_symlink(elsewhere.path() + "/calico.conflist", d.dir() + "/10-calico.conflist");
  const auto r = mustChain(d.opts());
  EXPECT_TRUE(r.chained);
  EXPECT_TRUE(fs::is_symlink(d.dir() + "/10-calico.conflist"));
  EXPECT_NE(slurp(elsewhere.path() + "/calico.conflist").find("colo-cni"), std::string::npos) << "the link's target was edited";
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_TRUE(fs::is_symlink(d.dir() + "/10-calico.conflist"));
  EXPECT_EQ(slurp(elsewhere.path() + "/calico.conflist"), original);
}

TEST(Installer, Version020IsRefusedAndLeftUntouched) {
  ConfDir d;
  const std::string path = d.put("legacy-0.2.0.conf", "10-mynet.conf");
  const auto before = d.snapshot();
  const auto r = mustChain(d.opts());
  EXPECT_FALSE(r.chained);
  EXPECT_NE(r.message.find("cniVersion \"0.2.0\""), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("NOT chained"), std::string::npos) << r.message;
  EXPECT_EQ(d.snapshot(), before);
  EXPECT_FALSE(inspect(d.opts()).chained);
}

TEST(Installer, UpgradeUpdatesOurEntryInPlace) {
  ConfDir d;
  const std::string path = d.put("calico.conflist", "10-calico.conflist");
  const std::string original = slurp(path);
  mustChain(d.opts({{"failurePolicy", "open"}, {"timeoutMs", 500}}));
  const auto r = mustChain(d.opts({{"failurePolicy", "closed"}, {"timeoutMs", 900}}));
  EXPECT_EQ(r.action, "updated");
  const ojson j = ojson::parse(slurp(path));
  EXPECT_EQ(j["plugins"].size(), 4u);
  EXPECT_EQ(j["plugins"][3]["failurePolicy"], "closed");
  EXPECT_EQ(j["plugins"][3]["timeoutMs"], 900);
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_EQ(slurp(path), original) << "still restored byte for byte after an update";
}

TEST(Installer, ForeignEntryIsLeftAloneAndSaidSo) {
  ConfDir d;
  const std::string path = d.put("already-chained.conflist", "10-x.conflist");
  const std::string original = slurp(path);
  const auto r = mustChain(d.opts({{"failurePolicy", "open"}}));
  EXPECT_TRUE(r.chained);
  EXPECT_EQ(r.action, "foreign");
  EXPECT_NE(r.message.find("did not put it there"), std::string::npos) << r.message;
  EXPECT_EQ(slurp(path), original) << "its failurePolicy closed is not ours to change";
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_EQ(slurp(path), original) << "uninstall removes only what it added";
  EXPECT_EQ(filesNamingColo(d.dir()), std::vector<std::string>{path}) << "and the binary must stay for it";
}

TEST(Installer, MultusThinWhoseDelegateNamesColoIsForeign) {
  ConfDir d;
  d.put("calico.conflist", "10-calico.conflist");
  ojson multus = ojson::parse(slurp(fixture("multus-thin.conf")));
  multus["delegates"][0]["plugins"].push_back(coloPlugin(ojson::object()));  // Multus copied a chain that had colo-cni
  std::ofstream(d.dir() + "/00-multus.conf") << multus.dump();
  const auto before = d.snapshot();
  const auto r = mustChain(d.opts());
  EXPECT_EQ(r.action, "foreign");
  EXPECT_TRUE(r.chained);
  EXPECT_EQ(d.snapshot(), before);
}

TEST(Installer, UninstallAfterThePrimaryRewroteItsFileTakesOutOnlyOurEntry) {
  ConfDir d;
  const std::string path = d.put("calico.conflist", "10-calico.conflist");
  mustChain(d.opts());
  ojson j = ojson::parse(slurp(path));
  j["plugins"][0]["mtu"] = 1450;  // the primary changed something meanwhile
  std::ofstream(path) << j.dump(2);
  ASSERT_TRUE(unchain(d.dir()).ok());
  const ojson after = ojson::parse(slurp(path));
  EXPECT_FALSE(namesColo(after));
  EXPECT_EQ(after["plugins"][0]["mtu"], 1450) << "their change is kept";
}

TEST(Installer, APrimaryWritingItsOwnColoEntryOwnsIt) {
  // Cilium with cni.configMap (colo's advice) rewrites the file colo had appended to, with a
  // colo-cni entry of its own: colo neither updates nor removes it.
  ConfDir d;
  const std::string path = d.put("cilium.conflist", "05-cilium.conflist");
  mustChain(d.opts());
  ojson theirs = ojson::parse(slurp(fixture("cilium.conflist")));
  theirs["plugins"].push_back({{"type", "colo-cni"}, {"failurePolicy", "closed"}, {"timeoutMs", 2000}});
  std::ofstream(path) << theirs.dump(2);
  const std::string written = slurp(path);
  const auto r = mustChain(d.opts());
  EXPECT_EQ(r.action, "foreign");
  EXPECT_TRUE(r.chained);
  EXPECT_EQ(slurp(path), written) << "not rewritten";
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_EQ(slurp(path), written) << "not taken out at uninstall";
}

TEST(Installer, OurEntryKeyOrderDoesNotMakeItForeign) {
  ConfDir d;
  const std::string path = d.put("calico.conflist", "10-calico.conflist");
  mustChain(d.opts());
  // A tool that rewrites the file with sorted keys keeps colo's entry colo's.
  const std::string sorted = nlohmann::json::parse(slurp(path)).dump(2);
  std::ofstream(path) << sorted;
  EXPECT_EQ(mustChain(d.opts()).action, "present");
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_TRUE(filesNamingColo(d.dir()).empty());
}

TEST(Installer, StateIsWrittenOnlyWhenItChanges) {
  ConfDir d;
  d.put("calico.conflist", "10-calico.conflist");
  mustChain(d.opts());
  const std::string state = d.dir() + "/" + kStateFile;
  struct stat before{};
  ASSERT_EQ(::stat(state.c_str(), &before), 0);
  EXPECT_EQ(mustChain(d.opts()).action, "present");
  struct stat after{};
  ASSERT_EQ(::stat(state.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino) << "an idle pass replaced the state file";
}

TEST(Installer, AnEarlierFileTakesColoAndTheOldOneIsRestored) {
  ConfDir d;
  const std::string calico = d.put("calico.conflist", "10-calico.conflist");
  const std::string original = slurp(calico);
  mustChain(d.opts());
  d.put("multus-thick.conf", "00-multus.conf");
  const auto r = mustChain(d.opts());
  EXPECT_EQ(r.file, d.dir() + "/00-multus.colo.conflist");
  EXPECT_EQ(slurp(calico), original) << "colo-cni lives in one file: the one runtimes load";
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_TRUE(filesNamingColo(d.dir()).empty());
  EXPECT_FALSE(fs::exists(d.dir() + "/00-multus.colo.conflist"));
}

TEST(Installer, APrimaryDeletedAndRecreatedIsChainedAgainAndRestoredToItsNewBytes) {
  ConfDir d;
  const std::string path = d.put("kindnet.conflist", "10-kindnet.conflist");
  mustChain(d.opts());
  fs::remove(path);
  EXPECT_TRUE(mustChain(d.opts()).waiting);
  d.put("flannel.conflist", "10-kindnet.conflist");  // back, with other contents
  const std::string recreated = slurp(path);
  const auto r = mustChain(d.opts());
  EXPECT_EQ(r.action, "appended");
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_EQ(slurp(path), recreated);
}

TEST(Installer, AGeneratedFileGoesWithItsSource) {
  ConfDir d;
  const std::string conf = d.put("bridge.conf", "10-bridge.conf");
  mustChain(d.opts());
  fs::remove(conf);
  EXPECT_FALSE(mustChain(d.opts()).chained);
  EXPECT_FALSE(fs::exists(d.dir() + "/10-bridge.colo.conflist")) << "it would keep a deleted network alive";
}

TEST(Installer, NamedConfFileIsUsedInsteadOfTheFirst) {
  ConfDir d;
  d.put("multus-thick.conf", "00-multus.conf");
  const std::string calico = d.put("calico.conflist", "10-calico.conflist");
  EXPECT_TRUE(mustChain(d.opts(ojson::object(), "20-missing.conflist")).waiting);
  const auto r = mustChain(d.opts(ojson::object(), "10-calico.conflist"));
  EXPECT_EQ(r.file, calico);
  EXPECT_TRUE(inspect(d.opts(ojson::object(), "10-calico.conflist")).chained);
  EXPECT_FALSE(namesColo(ojson::parse(slurp(d.dir() + "/00-multus.conf"))));
}

TEST(Installer, MalformedFileIsLeftUntouchedWithAClearMessage) {
  ConfDir d;
  const std::string path = d.put("malformed.conflist", "05-broken.conflist");
  const std::string original = slurp(path);
  const auto r = mustChain(d.opts());
  EXPECT_FALSE(r.chained);
  EXPECT_NE(r.message.find("05-broken.conflist is not valid JSON; left untouched"), std::string::npos) << r.message;
  EXPECT_EQ(slurp(path), original);
}

TEST(Installer, PicksTheLexicallyFirstConfigAsRuntimesDo) {
  ConfDir d;
  d.put("flannel.conflist", "20-flannel.conflist");
  d.put("calico.conflist", "10-calico.conflist");
  std::ofstream(d.dir() + "/99-notes.txt") << "not a config";
  EXPECT_EQ(*activeConfig(d.dir()), d.dir() + "/10-calico.conflist");
  mustChain(d.opts());
  EXPECT_TRUE(namesColo(ojson::parse(slurp(d.dir() + "/10-calico.conflist"))));
  EXPECT_FALSE(namesColo(ojson::parse(slurp(d.dir() + "/20-flannel.conflist"))));
}

TEST(Installer, EmptyDirectoryWaitsForThePrimary) {
  ConfDir d;
  const auto r = mustChain(d.opts());
  EXPECT_TRUE(r.waiting);
  EXPECT_FALSE(r.chained);
}

TEST(Installer, FirstInstallersStateIsReadAndUndone) {
  ConfDir d;
  const std::string path = d.put("calico.conflist", "10-calico.conflist");
  const std::string original = slurp(path);
  fs::copy_file(path, path + ".colo-backup");
  ojson j = ojson::parse(original);
  j["plugins"].push_back(coloPlugin(ojson::object()));
  std::ofstream(path) << j.dump(2);
  std::ofstream(d.dir() + "/" + kStateFile) << ojson{{"action", "appended"}, {"file", path}, {"backup", path + ".colo-backup"}}.dump();
  EXPECT_EQ(mustChain(d.opts()).action, "present") << "recognised as ours";
  ASSERT_TRUE(unchain(d.dir()).ok());
  EXPECT_EQ(slurp(path), original);
}

TEST(Installer, CniVersionMessagesNameTheFile) {
  EXPECT_TRUE(checkVersion(ojson{{"cniVersion", "0.3.0"}}, "f").ok());
  EXPECT_TRUE(checkVersion(ojson{{"cniVersion", "1.1.0"}}, "f").ok());
  EXPECT_FALSE(checkVersion(ojson{{"cniVersion", "0.2.0"}}, "f").ok());
  EXPECT_FALSE(checkVersion(ojson::object(), "f").ok());
  EXPECT_NE(checkVersion(ojson{{"cniVersion", "0.1.0"}}, "/x/10-a.conf").error().message.find("/x/10-a.conf"), std::string::npos);
}

TEST(Installer, CiliumAdviceIsItsDocumentedChainingWay) {
  const std::string advice = fightAdvice(ojson::parse(slurp(fixture("cilium.conflist"))), "/etc/cni/net.d/05-cilium.conflist");
  EXPECT_NE(advice.find("cni.configMap"), std::string::npos) << advice;
  EXPECT_NE(advice.find("cni.customConf=true"), std::string::npos) << advice;
  EXPECT_EQ(fightAdvice(ojson::parse(slurp(fixture("calico.conflist"))), "f").find("Cilium"), std::string::npos);
}

TEST(Installer, BinaryIsInstalledAtomicallyAndRemoved) {
  test::TempDir src, bin;
  std::ofstream(src.path() + "/colo-cni") << "#!/bin/sh\necho v2\n";
  std::ofstream(bin.path() + "/colo-cni") << "old";
  ASSERT_TRUE(installBinary(src.path() + "/colo-cni", bin.path()).ok());
  EXPECT_EQ(slurp(bin.path() + "/colo-cni"), "#!/bin/sh\necho v2\n");
  EXPECT_EQ(modeOf(bin.path() + "/colo-cni"), 0755u);
  for (const auto& e : fs::directory_iterator(bin.path())) EXPECT_EQ(e.path().filename(), "colo-cni") << "no temporary file left";
  std::ofstream(bin.path() + "/.colo-cni.tmp.999999") << "half";  // an installer killed mid-copy
  ASSERT_TRUE(removeBinary(bin.path()).ok());
  EXPECT_FALSE(fs::exists(bin.path() + "/colo-cni"));
  EXPECT_FALSE(fs::exists(bin.path() + "/.colo-cni.tmp.999999")) << "a killed installer's copy goes too";
  EXPECT_TRUE(removeBinary(bin.path()).ok()) << "idempotent";
}

TEST(Installer, FightDetectorBacksOffAndNeverGivesUp) {
  using namespace std::chrono;
  FightDetector f(3, seconds(60), seconds(2), seconds(16));
  const auto t0 = steady_clock::now();
  EXPECT_EQ(f.reAdded(t0).count(), 0);
  EXPECT_EQ(f.reAdded(t0 + seconds(100)).count(), 0);  // the first fell out of the window
  EXPECT_EQ(f.reAdded(t0 + seconds(110)).count(), 0);
  EXPECT_EQ(f.reAdded(t0 + seconds(120)), milliseconds(2000)) << "a third within 60 s: pause";
  EXPECT_EQ(f.reAdded(t0 + seconds(123)), milliseconds(4000));
  EXPECT_EQ(f.reAdded(t0 + seconds(128)), milliseconds(8000));
  EXPECT_EQ(f.reAdded(t0 + seconds(137)), milliseconds(16000));
  EXPECT_EQ(f.reAdded(t0 + seconds(154)), milliseconds(16000)) << "capped";
  EXPECT_EQ(f.reAdded(t0 + seconds(600)).count(), 0) << "calm again: no pause";
}

}  // namespace
}  // namespace colo::installer
