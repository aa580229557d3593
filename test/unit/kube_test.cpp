#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "broker/broker.h"
#include "kube/event_recorder.h"
#include "kube/kube_config.h"
#include "kube/line_decoder.h"
#include "kube/pod_parse.h"
#include "test_util.h"

namespace colo::node::kube {
namespace {

using nlohmann::json;

std::vector<std::string> decodeInChunks(const std::string& stream, std::size_t chunk, std::size_t* pending = nullptr) {
  LineDecoder d;
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < stream.size(); i += chunk) {
    EXPECT_TRUE(d.feed(stream.data() + i, std::min(chunk, stream.size() - i), [&](std::string_view l) { lines.emplace_back(l); }));
  }
  if (pending) *pending = d.pending();
  return lines;
}

TEST(LineDecoder, EventsSurviveAnyChunking) {
  // The second event holds multi-byte UTF-8 (é is 2 bytes, 🚀 is 4): every chunk size splits it somewhere.
  const std::string e1 = R"({"type":"ADDED","object":{"metadata":{"name":"a"}}})";
  const std::string e2 = R"({"type":"MODIFIED","object":{"metadata":{"name":"caf)" "\xc3\xa9" "\xf0\x9f\x9a\x80" R"("}}})";
  const std::string e3 = R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"42"}}})";
  const std::string stream = e1 + "\n" + e2 + "\r\n" + e3 + "\n";
  for (std::size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    auto lines = decodeInChunks(stream, chunk);
    ASSERT_EQ(lines.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(lines[0], e1);
    EXPECT_EQ(lines[1], e2);
    auto ev = parseWatchEvent(lines[1]);
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->object["metadata"]["name"].get<std::string>(), "caf\xc3\xa9\xf0\x9f\x9a\x80");
    EXPECT_EQ(lines[2], e3);
  }
}

TEST(LineDecoder, AStreamCutMidEventDecodesNothingOfIt) {
  const std::string whole = R"({"type":"ADDED","object":{}})";
  std::size_t pending = 0;
  auto lines = decodeInChunks(whole + "\n" + whole.substr(0, 10), 7, &pending);
  EXPECT_EQ(lines.size(), 1u);
  EXPECT_EQ(pending, 10u);
  LineDecoder small(64);
  EXPECT_FALSE(small.feed(std::string(100, 'x').data(), 100, [](std::string_view) {}));  // runaway line: the stream is broken
}

TEST(PodParse, TakesWhatColoUsesAndDropsNonStrings) {
  auto j = json::parse(R"({"metadata":{"name":"web","namespace":"shop","uid":"u-1","resourceVersion":"7",
    "annotations":{"colo.dev/enabled":"true","bad":5},"labels":{"app":"web"},"deletionTimestamp":"2026-01-01T00:00:00Z"},
    "spec":{"nodeName":"n1","serviceAccountName":"web-sa","hostNetwork":false},
    "status":{"phase":"Running","podIPs":[{"ip":"198.18.0.5"},{"ip":"fd00::5"}]}})");
  auto p = podFromApi(j);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->uid, "u-1");
  EXPECT_EQ(p->nodeName, "n1");
  EXPECT_EQ(p->serviceAccount, "web-sa");
  EXPECT_EQ(p->annotations, json({{"colo.dev/enabled", "true"}}));
  EXPECT_TRUE(p->terminating);
  EXPECT_EQ(p->ips, (std::vector<std::string>{"198.18.0.5", "fd00::5"}));
  EXPECT_EQ(p->phase, "Running");
  EXPECT_FALSE(podFromApi(json::parse(R"({"metadata":{"name":"x"}})")));
  EXPECT_FALSE(podFromApi(json::array()));
  EXPECT_FALSE(parseWatchEvent("not json"));
  EXPECT_FALSE(parseWatchEvent("[1]"));
  EXPECT_EQ(statusCode(json::parse(R"({"kind":"Status","code":410,"reason":"Expired"})")), 410);
  EXPECT_EQ(statusCode(json::parse(R"({"kind":"Pod","code":410})")), 0);
}

TEST(KubeConfig, ServerUrls) {
  ApiEndpoint ep;
  ASSERT_TRUE(parseServerUrl("https://198.18.0.1:6443", ep).ok());
  EXPECT_EQ(ep.host, "198.18.0.1");
  EXPECT_EQ(ep.port, 6443);
  ASSERT_TRUE(parseServerUrl("https://[fd00::1]:8443/", ep).ok());
  EXPECT_EQ(ep.host, "fd00::1");
  EXPECT_EQ(ep.port, 8443);
  ASSERT_TRUE(parseServerUrl("http://api.local", ep).ok());
  EXPECT_FALSE(ep.tls);
  EXPECT_EQ(ep.port, 80);
  EXPECT_FALSE(parseServerUrl("ftp://x", ep).ok());
  EXPECT_FALSE(parseServerUrl("https://x:99999", ep).ok());
  EXPECT_FALSE(parseServerUrl("https://x/prefix", ep).ok());
}

TEST(KubeConfig, KubeconfigWithDataFilesAndTokenFile) {
  test::TempDir dir;
  std::ofstream(dir.path() + "/ca.pem") << "CA-PEM";
  std::ofstream(dir.path() + "/token") << "tok-1\n";
  // "Q0xJRU5ULUNFUlQ=" is base64 for "CLIENT-CERT".
  std::ofstream(dir.path() + "/config") << R"(apiVersion: v1
kind: Config
current-context: colo
contexts:
- name: other
  context: {cluster: nope, user: nope}
- name: colo
  context: {cluster: fake, user: agent}
clusters:
- name: fake
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: ca.pem
users:
- name: agent
  user:
    client-certificate-data: Q0xJRU5ULUNFUlQ=
    client-key-data: S0VZ
    tokenFile: token
)";
  auto ep = kubeconfigEndpoint(dir.path() + "/config");
  ASSERT_TRUE(ep.ok()) << ep.error().message;
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 6443);
  EXPECT_EQ(ep->caPem, "CA-PEM");
  EXPECT_EQ(ep->clientCertPem, "CLIENT-CERT");
  EXPECT_EQ(ep->clientKeyPem, "KEY");
  EXPECT_EQ(ep->tokenFile, dir.path() + "/token");

  // The token is re-read when the file is replaced (as kubelet rotates projected tokens).
  TokenSource tokens(*ep);
  EXPECT_EQ(tokens.current(), "tok-1");
  std::ofstream(dir.path() + "/token.new") << "tok-2-longer\n";
  std::filesystem::rename(dir.path() + "/token.new", dir.path() + "/token");
  EXPECT_EQ(tokens.current(), "tok-2-longer");
  std::filesystem::remove(dir.path() + "/token");
  EXPECT_EQ(tokens.current(), "tok-2-longer");  // missing for a moment: keep the last good one
}

TEST(KubeConfig, ErrorsNameTheProblem) {
  test::TempDir dir;
  auto write = [&](const std::string& text) {
    std::ofstream(dir.path() + "/config") << text;
    auto ep = kubeconfigEndpoint(dir.path() + "/config");
    return ep.ok() ? std::string("ok") : ep.error().message;
  };
  EXPECT_NE(write("current-context: x\ncontexts: []\n").find("context 'x' not found"), std::string::npos);
  EXPECT_NE(write("[1, 2]").find("not a kubeconfig"), std::string::npos);
  EXPECT_NE(write("current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://x', certificate-authority: missing.pem}}]\n")
                .find("certificate-authority"),
            std::string::npos);
  EXPECT_NE(write("current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://x'}}]\nusers: [{name: u, user: {exec: {command: aws}}}]\n")
                .find("exec"),
            std::string::npos);
  EXPECT_FALSE(kubeconfigEndpoint(dir.path() + "/absent").ok());
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_NE(inClusterEndpoint(dir.path()).error().message.find("KUBERNETES_SERVICE_HOST"), std::string::npos);
}

TEST(Events, AnEventIsACoreV1EventOnThePod) {
  Pod p;
  p.podNamespace = "shop";
  p.name = "web";
  p.uid = "u-1";
  auto ev = EventRecorder::eventFor(p, "Warning", "HugepagesRefused", "needs 4Mi, 2Mi left", "node-1");
  EXPECT_EQ(ev["kind"], "Event");
  EXPECT_EQ(ev["involvedObject"], json({{"apiVersion", "v1"}, {"kind", "Pod"}, {"name", "web"}, {"namespace", "shop"}, {"uid", "u-1"}}));
  EXPECT_EQ(ev["metadata"]["namespace"], "shop");
  EXPECT_EQ(ev["metadata"]["name"].get<std::string>().rfind("web.", 0), 0u);
  EXPECT_EQ(ev["source"]["host"], "node-1");
  EXPECT_NE(ev["metadata"]["name"], EventRecorder::eventFor(p, "Warning", "X", "y", "n")["metadata"]["name"]);
}

TEST(Policy, ServiceAccountsFromTheApiJoinAllowFrom) {
  Pod listener, caller;
  listener.podNamespace = "shop";
  listener.annotations = {{"colo.dev/allow-from", "payments/checkout, ops"}};
  caller.podNamespace = "payments";
  EXPECT_FALSE(Broker::allowed(caller, listener));  // service account unknown (standalone): no match
  caller.serviceAccount = "checkout";
  EXPECT_TRUE(Broker::allowed(caller, listener));
  caller.serviceAccount = "refunds";
  EXPECT_FALSE(Broker::allowed(caller, listener));
  caller.podNamespace = "ops";
  EXPECT_TRUE(Broker::allowed(caller, listener));  // a whole namespace still works
  caller.podNamespace = "shop";
  EXPECT_TRUE(Broker::allowed(caller, listener));  // own namespace
  caller.podNamespace = "other";
  caller.serviceAccount = "checkout";
  EXPECT_FALSE(Broker::allowed(caller, listener));  // same account name, other namespace
  EXPECT_EQ(json(Broker::identityOf(caller)).value("serviceAccount", ""), "checkout");
}

}  // namespace
}  // namespace colo::node::kube
