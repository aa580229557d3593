// Service translation without root: which Services and backends are chosen from the API's objects
// (kube::ServiceCache::localFrontends), and how the frontend map is written and kept exact
// (ServiceTable against a fake map).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>
#include <map>
#include <set>

#include "datapath/service_table.h"
#include "kube/service_cache.h"

namespace colo::node {
namespace {

using nlohmann::json;
using kube::LocalFrontend;
using kube::ServiceCache;

const std::string kNode = "n1";

json service(const std::string& name, json spec, json annotations = json::object()) {
  if (!spec.contains("ports")) {
    spec["ports"] = json::array({{{"name", "http"}, {"port", 80}, {"targetPort", "web"}}, {{"name", "dns"}, {"protocol", "UDP"}, {"port", 53}}});
  }
  return {{"metadata", {{"namespace", "shop"}, {"name", name}, {"annotations", annotations}}}, {"spec", spec}};
}

json endpoint(const std::string& ip, const std::string& node, json ready = true) {
  json e = {{"addresses", {ip}}, {"targetRef", {{"kind", "Pod"}, {"name", "p-" + ip}}}};
  if (!node.empty()) e["nodeName"] = node;
  if (!ready.is_null()) e["conditions"] = {{"ready", ready}};
  return e;
}

json slice(const std::string& name, const std::string& svc, json endpoints, const std::string& family = "IPv4", int port = 8080) {
  return {{"metadata", {{"namespace", "shop"}, {"name", name}, {"labels", {{"kubernetes.io/service-name", svc}}}}},
          {"addressType", family},
          {"ports", json::array({{{"name", "http"}, {"protocol", "TCP"}, {"port", port}}, {{"name", "dns"}, {"protocol", "UDP"}, {"port", 5353}}})},
          {"endpoints", endpoints}};
}

struct Fixture {
  ServiceCache cache;
  std::set<std::string> local{"198.18.0.2", "198.18.0.3", "2001:2::2"};
  std::vector<LocalFrontend> frontends() const {
    return cache.localFrontends(kNode, [&](const std::string& ip) { return local.count(ip) > 0; });
  }
};

TEST(ServiceSelection, OnlyServicesAskingForNodeLocalTrafficAreTranslated) {
  Fixture f;
  f.cache.replaceServices({
      service("plain", {{"clusterIP", "10.0.0.1"}}),
      service("same-node", {{"clusterIP", "10.0.0.2"}, {"trafficDistribution", "PreferSameNode"}}),
      service("itp-local", {{"clusterIP", "10.0.0.3"}, {"internalTrafficPolicy", "Local"}}),
      service("annotated", {{"clusterIP", "10.0.0.4"}}, {{"colo.dev/prefer-local", "true"}}),
      service("annotated-no", {{"clusterIP", "10.0.0.5"}}, {{"colo.dev/prefer-local", "yes"}}),
      service("zone", {{"clusterIP", "10.0.0.6"}, {"trafficDistribution", "PreferClose"}}),
      service("headless", {{"clusterIP", "None"}, {"internalTrafficPolicy", "Local"}}),
      service("alias", {{"type", "ExternalName"}, {"externalName", "db.example"}, {"internalTrafficPolicy", "Local"}}),
  });
  std::vector<json> slices;
  for (const char* s : {"plain", "same-node", "itp-local", "annotated", "annotated-no", "zone", "headless", "alias"}) {
    slices.push_back(slice(std::string(s) + "-x", s, json::array({endpoint("198.18.0.2", kNode)})));
  }
  f.cache.replaceSlices(slices);
  std::set<std::string> got;
  for (const auto& fe : f.frontends()) got.insert(fe.name);
  EXPECT_EQ(got, (std::set<std::string>{"same-node", "itp-local", "annotated"}));
}

TEST(ServiceSelection, LocalReadyOptedInBackendsOnlyWithTheSlicesPortTcpOnly) {
  Fixture f;
  f.cache.replaceServices({service("cart", {{"clusterIP", "10.0.0.1"}, {"trafficDistribution", "PreferSameNode"}})});
  f.cache.replaceSlices({slice("cart-a", "cart",
                               json::array({endpoint("198.18.0.2", kNode), endpoint("198.18.0.3", kNode, false),  // not ready
                                            endpoint("198.18.0.4", kNode),                                       // not an opted-in local pod
                                            endpoint("198.18.0.3", "n2"),                                        // another node
                                            endpoint("198.18.0.2", "", nullptr)})),                               // no node, no condition: ready
                         slice("other", "payments", json::array({endpoint("198.18.0.3", kNode)}))});
  auto fe = f.frontends();
  ASSERT_EQ(fe.size(), 1u) << "one TCP port (the UDP one is never translated)";
  EXPECT_EQ(fe[0].clusterIP, "10.0.0.1");
  EXPECT_EQ(fe[0].port, 80);
  ASSERT_EQ(fe[0].backends.size(), 1u) << "duplicates folded; not-ready, foreign, remote and other services' left out";
  EXPECT_EQ(fe[0].backends[0].address, "198.18.0.2");
  EXPECT_EQ(fe[0].backends[0].port, 8080) << "the slice's port of the same name";

  // Ready again: two local backends, sorted.
  f.cache.sliceEvent("MODIFIED", slice("cart-a", "cart", json::array({endpoint("198.18.0.3", kNode), endpoint("198.18.0.2", kNode)})));
  fe = f.frontends();
  ASSERT_EQ(fe.size(), 1u);
  ASSERT_EQ(fe[0].backends.size(), 2u);
  EXPECT_EQ(fe[0].backends[0].address, "198.18.0.2");
  EXPECT_EQ(fe[0].backends[1].address, "198.18.0.3");

  // No local ready backend left: the frontend goes.
  f.cache.sliceEvent("MODIFIED", slice("cart-a", "cart", json::array({endpoint("198.18.0.2", kNode, false)})));
  EXPECT_TRUE(f.frontends().empty());
}

// sessionAffinity ClientIP: a client keeps reaching one backend, so the Service gets one local
// backend (the same for every caller here) instead of a random pick per connect.
TEST(ServiceSelection, ClientIpAffinityKeepsOneStableBackend) {
  Fixture f;
  f.cache.replaceServices({service("sticky", {{"clusterIP", "10.0.0.7"}, {"sessionAffinity", "ClientIP"}, {"internalTrafficPolicy", "Local"}}),
                           service("spread", {{"clusterIP", "10.0.0.8"}, {"sessionAffinity", "None"}, {"internalTrafficPolicy", "Local"}})});
  const json both = json::array({endpoint("198.18.0.3", kNode), endpoint("198.18.0.2", kNode)});
  f.cache.replaceSlices({slice("sticky-a", "sticky", both), slice("spread-a", "spread", both)});
  std::map<std::string, std::vector<std::string>> got;
  for (const auto& fe : f.frontends())
    for (const auto& b : fe.backends) got[fe.name].push_back(b.address);
  EXPECT_EQ(got["sticky"], (std::vector<std::string>{"198.18.0.2"}));
  EXPECT_EQ(got["spread"], (std::vector<std::string>{"198.18.0.2", "198.18.0.3"}));
}

TEST(ServiceSelection, DualStackPairsEachClusterIpWithItsFamilysSlices) {
  Fixture f;
  f.cache.replaceServices({service("cart", {{"clusterIP", "10.0.0.1"}, {"clusterIPs", {"10.0.0.1", "fd00::1"}}, {"internalTrafficPolicy", "Local"}})});
  f.cache.replaceSlices({slice("cart-4", "cart", json::array({endpoint("198.18.0.2", kNode)})),
                         slice("cart-6", "cart", json::array({endpoint("2001:2::2", kNode)}), "IPv6", 9090)});
  std::map<std::string, LocalFrontend> by;
  for (auto& fe : f.frontends()) by[fe.clusterIP] = fe;
  ASSERT_EQ(by.size(), 2u);
  ASSERT_EQ(by["10.0.0.1"].backends.size(), 1u);
  EXPECT_EQ(by["10.0.0.1"].backends[0].address, "198.18.0.2");
  ASSERT_EQ(by["fd00::1"].backends.size(), 1u);
  EXPECT_EQ(by["fd00::1"].backends[0].address, "2001:2::2");
  EXPECT_EQ(by["fd00::1"].backends[0].port, 9090);
}

TEST(ServiceSelection, LosingThePreferenceOrTheServiceRemovesIt) {
  Fixture f;
  f.cache.replaceServices({service("cart", {{"clusterIP", "10.0.0.1"}}, {{"colo.dev/prefer-local", "true"}})});
  f.cache.replaceSlices({slice("cart-a", "cart", json::array({endpoint("198.18.0.2", kNode)}))});
  EXPECT_EQ(f.frontends().size(), 1u);
  f.cache.serviceEvent("MODIFIED", service("cart", {{"clusterIP", "10.0.0.1"}}));
  EXPECT_TRUE(f.frontends().empty());
  f.cache.serviceEvent("MODIFIED", service("cart", {{"clusterIP", "10.0.0.1"}, {"internalTrafficPolicy", "Local"}}));
  EXPECT_EQ(f.frontends().size(), 1u);
  f.cache.serviceEvent("DELETED", service("cart", {{"clusterIP", "10.0.0.1"}}));
  EXPECT_TRUE(f.frontends().empty());
}

TEST(ServiceSelection, NothingBeforeBothKindsAreListedAndChangesAreAnnounced) {
  Fixture f;
  int changes = 0;
  f.cache.setOnChange([&] { ++changes; });
  f.cache.replaceServices({service("cart", {{"clusterIP", "10.0.0.1"}, {"internalTrafficPolicy", "Local"}})});
  EXPECT_TRUE(f.frontends().empty()) << "slices not listed yet";
  f.cache.replaceSlices({slice("cart-a", "cart", json::array({endpoint("198.18.0.2", kNode)}))});
  EXPECT_EQ(f.frontends().size(), 1u);
  f.cache.sliceEvent("DELETED", slice("cart-a", "cart", json::array()));
  EXPECT_EQ(changes, 3);
  EXPECT_TRUE(f.frontends().empty());
}

// A fake frontend map recording what is in it and every write.
class FakeMap final : public FrontendWriter {
 public:
  std::map<FrontendId, colo_svc_value> entries;
  int puts = 0, removes = 0;
  bool failPuts = false;
  Status put(const colo_svc_key& k, const colo_svc_value& v) override {
    if (failPuts) return Error::make("unavailable", "full");
    ++puts;
    entries[frontendId(k)] = v;
    return {};
  }
  Status remove(const colo_svc_key& k) override {
    ++removes;
    entries.erase(frontendId(k));
    return {};
  }
};

LocalFrontend frontend(const std::string& svc, const std::string& ip, int port, std::vector<LocalFrontend::Target> b) {
  return {"shop", svc, ip, port, std::move(b)};
}

TEST(ServiceTable, EncodesKeysAndBackendsInNetworkOrderAddressesAndHostOrderPorts) {
  colo_svc_key k{};
  colo_svc_value v{};
  ASSERT_TRUE(ServiceTable::encode(frontend("cart", "10.0.0.1", 80, {{"198.18.0.2", 8080}, {"2001:2::2", 8080}, {"198.18.0.3", 8081}}), k, v));
  EXPECT_EQ(k.family, static_cast<std::uint32_t>(AF_INET));
  EXPECT_EQ(k.addr[0], ::inet_addr("10.0.0.1"));
  EXPECT_EQ(k.addr[1], 0u);
  EXPECT_EQ(k.port, 80);
  EXPECT_EQ(k.proto, IPPROTO_TCP);
  ASSERT_EQ(v.count, 2u) << "a backend of the other family is skipped";
  EXPECT_EQ(v.backends[0].addr[0], ::inet_addr("198.18.0.2"));
  EXPECT_EQ(v.backends[1].port, 8081);

  ASSERT_TRUE(ServiceTable::encode(frontend("cart", "fd00::1", 443, {{"2001:2::2", 8443}}), k, v));
  EXPECT_EQ(k.family, static_cast<std::uint32_t>(AF_INET6));
  in6_addr want{};
  ::inet_pton(AF_INET6, "2001:2::2", &want);
  EXPECT_EQ(std::memcmp(v.backends[0].addr, &want, 16), 0);

  EXPECT_FALSE(ServiceTable::encode(frontend("cart", "not-an-ip", 80, {{"198.18.0.2", 8080}}), k, v));
  EXPECT_FALSE(ServiceTable::encode(frontend("cart", "10.0.0.1", 80, {{"198.18.0.2", 0}}), k, v)) << "no usable backend";

  std::vector<LocalFrontend::Target> many;
  for (int i = 1; i <= 40; ++i) many.push_back({"198.18.1." + std::to_string(i), 80});
  ASSERT_TRUE(ServiceTable::encode(frontend("big", "10.0.0.9", 80, many), k, v));
  EXPECT_EQ(v.count, static_cast<std::uint32_t>(COLO_SVC_MAX_BACKENDS));
}

TEST(ServiceTable, WritesOnlyWhatChangedRemovesWhatWentAndReportsPerService) {
  ServiceTable t;
  FakeMap m;
  auto ch = t.apply({frontend("cart", "10.0.0.1", 80, {{"198.18.0.2", 8080}}), frontend("cart", "10.0.0.1", 443, {{"198.18.0.2", 8443}}),
                     frontend("pay", "10.0.0.2", 80, {{"198.18.0.3", 8080}})},
                    m);
  EXPECT_EQ(m.entries.size(), 3u);
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[0].service, "shop/cart");
  EXPECT_EQ(ch[0].backendsBefore, 0u);
  EXPECT_EQ(ch[0].backendsAfter, 2u);

  // The same again: nothing written, nothing reported.
  const int puts = m.puts;
  ch = t.apply({frontend("cart", "10.0.0.1", 80, {{"198.18.0.2", 8080}}), frontend("cart", "10.0.0.1", 443, {{"198.18.0.2", 8443}}),
                frontend("pay", "10.0.0.2", 80, {{"198.18.0.3", 8080}})},
               m);
  EXPECT_EQ(m.puts, puts);
  EXPECT_TRUE(ch.empty());

  // pay's backend went away, cart got a second one on port 80.
  ch = t.apply({frontend("cart", "10.0.0.1", 80, {{"198.18.0.2", 8080}, {"198.18.0.4", 8080}}), frontend("cart", "10.0.0.1", 443, {{"198.18.0.2", 8443}})}, m);
  EXPECT_EQ(m.entries.size(), 2u);
  EXPECT_EQ(m.removes, 1);
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[0].service, "shop/cart");
  EXPECT_EQ(ch[0].backendsAfter, 3u);
  EXPECT_EQ(ch[1].service, "shop/pay");
  EXPECT_EQ(ch[1].backendsAfter, 0u);
  EXPECT_EQ(t.backendsPerService(), (std::map<std::string, std::size_t>{{"shop/cart", 3}}));

  ch = t.apply({}, m);
  EXPECT_TRUE(m.entries.empty());
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].backendsAfter, 0u);
}

TEST(ServiceTable, AFailedWriteIsRetriedAtTheNextApply) {
  ServiceTable t;
  FakeMap m;
  m.failPuts = true;
  t.apply({frontend("cart", "10.0.0.1", 80, {{"198.18.0.2", 8080}})}, m);
  EXPECT_TRUE(m.entries.empty());
  EXPECT_EQ(t.frontends(), 0u);
  m.failPuts = false;
  t.apply({frontend("cart", "10.0.0.1", 80, {{"198.18.0.2", 8080}})}, m);
  EXPECT_EQ(m.entries.size(), 1u);
}

}  // namespace
}  // namespace colo::node
