// Dial by Kubernetes name: Services and EndpointSlices as the API sends them, resolved to the
// ready backends of one service port.
#include <gtest/gtest.h>

#include "kube/service_cache.h"

namespace colo::node::kube {
namespace {

using nlohmann::json;

json service(const std::string& name, const std::string& clusterIP) {
  return {{"metadata", {{"namespace", "shop"}, {"name", name}}},
          {"spec", {{"clusterIP", clusterIP},
                    {"ports", json::array({{{"name", "http"}, {"port", 80}, {"targetPort", "web"}},
                                           {{"name", "dns"}, {"protocol", "UDP"}, {"port", 53}}})}}}};
}

json endpoint(const std::string& ip, const std::string& node, const std::string& pod, json ready) {
  json e = {{"addresses", {ip}}, {"nodeName", node}, {"targetRef", {{"kind", "Pod"}, {"name", pod}}}};
  if (!ready.is_null()) e["conditions"] = {{"ready", ready}};
  return e;
}

json slice(const std::string& name, const std::string& svc, int port, json endpoints, const std::string& family = "IPv4") {
  return {{"metadata", {{"namespace", "shop"}, {"name", name}, {"labels", {{"kubernetes.io/service-name", svc}}}}},
          {"addressType", family},
          {"ports", json::array({{{"name", "http"}, {"protocol", "TCP"}, {"port", port}}})},
          {"endpoints", endpoints}};
}

TEST(ServiceCache, NothingResolvesBeforeBothKindsAreListed) {
  ServiceCache c;
  c.replaceServices({service("cart", "10.0.0.1")});
  auto t = c.service("shop", "cart", "80");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, "unavailable");
  c.replaceSlices({});
  EXPECT_TRUE(c.service("shop", "cart", "80"));
}

TEST(ServiceCache, PortByNumberOrNameWithTheSlicesTargetPortAndReadyBackendsOnly) {
  ServiceCache c;
  c.replaceServices({service("cart", "10.0.0.1")});
  c.replaceSlices({slice("cart-a", "cart", 8080,
                         json::array({endpoint("198.18.0.2", "n1", "cart-0", true), endpoint("198.18.0.3", "n2", "cart-1", false),
                                      endpoint("198.18.0.4", "n1", "cart-2", nullptr)})),  // no condition: ready
                   slice("cart-b", "cart", 9090, json::array({endpoint("198.18.0.5", "n3", "cart-3", true)})),
                   slice("other", "payments", 8080, json::array({endpoint("198.18.0.9", "n1", "pay-0", true)}))});
  for (const std::string spec : {"80", "http"}) {
    auto t = c.service("shop", "cart", spec);
    ASSERT_TRUE(t) << spec;
    EXPECT_EQ(t->clusterIP, "10.0.0.1");
    EXPECT_EQ(t->port.port, 80);
    ASSERT_EQ(t->ready.size(), 3u) << "not-ready cart-1 and the other service's backend are left out";
    EXPECT_EQ(t->ready[0].podName, "cart-0");
    EXPECT_EQ(t->ready[0].podNs, "shop");
    EXPECT_EQ(t->ready[0].targetPort, 8080);
    EXPECT_EQ(t->ready[1].podName, "cart-2");
    EXPECT_EQ(t->ready[2].targetPort, 9090) << "each slice says its own backends' port";
  }
  EXPECT_EQ(c.service("shop", "cart", "53").error().code, "not_found") << "UDP ports are not dialable";
  EXPECT_EQ(c.service("shop", "cart", "grpc").error().code, "not_found");
  EXPECT_EQ(c.service("shop", "nope", "80").error().code, "not_found");
  EXPECT_EQ(c.podAddress("shop", "cart-3"), "198.18.0.5");
  EXPECT_FALSE(c.podAddress("shop", "ghost"));
}

TEST(ServiceCache, WatchEventsUpdateAndDelete) {
  ServiceCache c;
  c.replaceServices({});
  c.replaceSlices({});
  c.serviceEvent("ADDED", service("cart", "None"));
  c.sliceEvent("ADDED", slice("cart-a", "cart", 8080, json::array({endpoint("198.18.0.2", "n1", "cart-0", true)})));
  ASSERT_EQ(c.service("shop", "cart", "http")->ready.size(), 1u);
  EXPECT_EQ(c.service("shop", "cart", "http")->clusterIP, "None");
  c.sliceEvent("MODIFIED", slice("cart-a", "cart", 8080, json::array({endpoint("198.18.0.2", "n1", "cart-0", false)})));
  EXPECT_TRUE(c.service("shop", "cart", "http")->ready.empty());
  c.serviceEvent("DELETED", service("cart", "None"));
  EXPECT_EQ(c.service("shop", "cart", "http").error().code, "not_found");
}

TEST(ServiceCache, BadObjectsAreSkippedNotTrusted) {
  ServiceCache c;
  json bad = slice("x", "cart", 70000, json::array({{{"addresses", json::array()}}, {{"addresses", {7}}}}));
  c.replaceServices({json::array(), json("text"), {{"metadata", {{"name", "no-namespace"}}}}, service("cart", "10.0.0.1")});
  c.replaceSlices({bad, slice("fqdn", "cart", 8080, json::array({endpoint("db.example", "n1", "cart-0", true)}), "FQDN")});
  auto t = c.service("shop", "cart", "http");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->ready.empty()) << "an out-of-range port, address-less endpoints and FQDN slices give no backend";
  EXPECT_EQ(c.services(), 1u);
}

}  // namespace
}  // namespace colo::node::kube
