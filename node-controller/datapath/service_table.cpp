#include "datapath/service_table.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace colo::node {
namespace {

// family and address words (network order) of a literal IP; false when it is none.
bool parseIp(const std::string& ip, std::uint32_t& family, std::uint32_t addr[4]) {
  std::memset(addr, 0, 16);
  if (::inet_pton(AF_INET, ip.c_str(), &addr[0]) == 1) {
    family = AF_INET;
    return true;
  }
  if (::inet_pton(AF_INET6, ip.c_str(), addr) == 1) {
    family = AF_INET6;
    return true;
  }
  return false;
}

bool sameValue(const colo_svc_value& a, const colo_svc_value& b) { return std::memcmp(&a, &b, sizeof(a)) == 0; }

}  // namespace

FrontendId frontendId(const colo_svc_key& k) { return {k.family, k.addr[0], k.addr[1], k.addr[2], k.addr[3], k.port, k.proto}; }

bool ServiceTable::encode(const kube::LocalFrontend& f, colo_svc_key& key, colo_svc_value& value) {
  key = colo_svc_key{};
  value = colo_svc_value{};
  if (f.port < 1 || f.port > 65535 || !parseIp(f.clusterIP, key.family, key.addr)) return false;
  key.port = static_cast<std::uint16_t>(f.port);
  key.proto = IPPROTO_TCP;
  for (const auto& b : f.backends) {
    if (value.count == COLO_SVC_MAX_BACKENDS) break;
    colo_svc_backend& out = value.backends[value.count];
    std::uint32_t family = 0;
    if (b.port < 1 || b.port > 65535 || !parseIp(b.address, family, out.addr) || family != key.family) {
      out = colo_svc_backend{};
      continue;
    }
    out.port = static_cast<std::uint16_t>(b.port);
    ++value.count;
  }
  return value.count > 0;
}

std::vector<ServiceChange> ServiceTable::apply(const std::vector<kube::LocalFrontend>& frontends, FrontendWriter& writer) {
  std::map<FrontendId, Entry> want;
  for (const auto& f : frontends) {
    Entry e{};
    if (!encode(f, e.key, e.value)) continue;
    e.service = f.ns + "/" + f.name;
    want[frontendId(e.key)] = e;
  }
  std::map<std::string, ServiceChange> changes;
  auto note = [&](const std::string& svc) -> ServiceChange& {
    auto& c = changes[svc];
    c.service = svc;
    return c;
  };
  for (const auto& [id, e] : written_) note(e.service).backendsBefore += e.value.count;
  // Removals first: a backend that went away must stop being chosen before anything else.
  for (auto it = written_.begin(); it != written_.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    if (auto s = writer.remove(it->second.key); !s) {
      spdlog::warn("service translation: removing {}: {}", it->second.service, s.error().message);
      ++it;  // still there: retried at the next apply
      continue;
    }
    it = written_.erase(it);
  }
  for (auto& [id, e] : want) {
    auto it = written_.find(id);
    if (it != written_.end() && sameValue(it->second.value, e.value) && it->second.service == e.service) continue;
    if (auto s = writer.put(e.key, e.value); !s) {
      spdlog::warn("service translation: writing {}: {}", e.service, s.error().message);
      continue;
    }
    written_[id] = e;
  }
  for (const auto& [id, e] : written_) note(e.service).backendsAfter += e.value.count;
  std::vector<ServiceChange> out;
  for (auto& [svc, c] : changes) {
    if (c.backendsBefore != c.backendsAfter) out.push_back(c);
  }
  return out;
}

std::map<std::string, std::size_t> ServiceTable::backendsPerService() const {
  std::map<std::string, std::size_t> out;
  for (const auto& [id, e] : written_) out[e.service] += e.value.count;
  return out;
}

}  // namespace colo::node
