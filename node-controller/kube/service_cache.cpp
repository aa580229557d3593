#include "kube/service_cache.h"

#include "colo/common/protocol.h"

#include <algorithm>

namespace colo::node::kube {

using json = nlohmann::json;

namespace {

std::string str(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

const json& obj(const json& j, const char* key) {
  static const json empty = json::object();
  return j.is_object() && j.contains(key) && j[key].is_object() ? j[key] : empty;
}

const json& arr(const json& j, const char* key) {
  static const json empty = json::array();
  return j.is_object() && j.contains(key) && j[key].is_array() ? j[key] : empty;
}

int port(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer()) return 0;
  const auto p = j[key].get<long long>();
  return p >= 1 && p <= 65535 ? static_cast<int>(p) : 0;
}

std::vector<ServicePort> portsOf(const json& list) {
  std::vector<ServicePort> out;
  for (const auto& p : list) {
    ServicePort sp{str(p, "name"), str(p, "protocol"), port(p, "port")};
    if (sp.protocol.empty()) sp.protocol = "TCP";  // the API's default
    out.push_back(std::move(sp));
  }
  return out;
}

bool allDigits(const std::string& s) { return !s.empty() && s.size() <= 5 && std::all_of(s.begin(), s.end(), ::isdigit); }

}  // namespace

std::optional<Service> serviceFromApi(const json& j) {
  const json& md = obj(j, "metadata");
  const json& spec = obj(j, "spec");
  Service s{str(md, "namespace"), str(md, "name"), str(spec, "clusterIP"), portsOf(arr(spec, "ports")), {}, false};
  if (s.ns.empty() || s.name.empty()) return std::nullopt;
  for (const auto& ip : arr(spec, "clusterIPs")) {
    if (ip.is_string() && ip != "None" && ip != "") s.clusterIPs.push_back(ip.get<std::string>());
  }
  if (s.clusterIPs.empty() && !s.clusterIP.empty() && s.clusterIP != "None") s.clusterIPs.push_back(s.clusterIP);
  if (str(spec, "type") == "ExternalName") s.clusterIPs.clear();  // a DNS alias: no address to translate
  s.preferLocal = str(spec, "trafficDistribution") == "PreferSameNode" || str(spec, "internalTrafficPolicy") == "Local" ||
                  str(obj(md, "annotations"), "colo.dev/prefer-local") == "true";
  s.clientIpAffinity = str(spec, "sessionAffinity") == "ClientIP";
  return s;
}

std::optional<EndpointSlice> sliceFromApi(const json& j) {
  const json& md = obj(j, "metadata");
  EndpointSlice s{str(md, "namespace"), str(md, "name"), str(obj(md, "labels"), "kubernetes.io/service-name"), portsOf(arr(j, "ports")), {}};
  if (s.ns.empty() || s.name.empty()) return std::nullopt;
  const std::string family = str(j, "addressType");
  if (family != "IPv4" && family != "IPv6") return s;  // FQDN slices name no pod address
  for (const auto& e : arr(j, "endpoints")) {
    const auto& addrs = arr(e, "addresses");
    if (addrs.empty() || !addrs[0].is_string()) continue;
    const json& cond = obj(e, "conditions");
    const json& ref = obj(e, "targetRef");
    SliceEndpoint ep{addrs[0].get<std::string>(), str(e, "nodeName"), "", "", !(cond.contains("ready") && cond["ready"] == false)};
    if (str(ref, "kind") == "Pod") {
      ep.podNs = str(ref, "namespace").empty() ? s.ns : str(ref, "namespace");
      ep.podName = str(ref, "name");
    }
    s.endpoints.push_back(std::move(ep));
  }
  return s;
}

void ServiceCache::setOnChange(std::function<void()> onChange) {
  std::lock_guard lock(mu_);
  onChange_ = std::move(onChange);
}

void ServiceCache::changed() const {
  std::function<void()> f;
  {
    std::lock_guard lock(mu_);
    f = onChange_;
  }
  if (f) f();
}

void ServiceCache::replaceServices(const std::vector<json>& items) {
  beginServices();
  for (const auto& i : items) addService(i);
  endServices();
}

void ServiceCache::replaceSlices(const std::vector<json>& items) {
  beginSlices();
  for (const auto& i : items) addSlice(i);
  endSlices();
}

void ServiceCache::beginServices() { listingServices_.clear(); }

void ServiceCache::addService(const json& item) {
  if (auto s = serviceFromApi(item)) listingServices_[s->ns + "/" + s->name] = std::move(*s);
}

void ServiceCache::endServices() {
  {
    std::lock_guard lock(mu_);
    services_.swap(listingServices_);
    servicesListed_ = true;
  }
  listingServices_.clear();
  changed();
}

void ServiceCache::beginSlices() { listingSlices_.clear(); }

void ServiceCache::addSlice(const json& item) {
  if (auto s = sliceFromApi(item)) listingSlices_[s->ns + "/" + s->name] = std::move(*s);
}

void ServiceCache::endSlices() {
  {
    std::lock_guard lock(mu_);
    slices_.swap(listingSlices_);
    slicesListed_ = true;
  }
  listingSlices_.clear();
  changed();
}

void ServiceCache::serviceEvent(const std::string& type, const json& o) {
  auto s = serviceFromApi(o);
  if (!s) return;
  {
    std::lock_guard lock(mu_);
    if (type == "DELETED") services_.erase(s->ns + "/" + s->name);
    else services_[s->ns + "/" + s->name] = std::move(*s);
  }
  changed();
}

void ServiceCache::sliceEvent(const std::string& type, const json& o) {
  auto s = sliceFromApi(o);
  if (!s) return;
  {
    std::lock_guard lock(mu_);
    if (type == "DELETED") slices_.erase(s->ns + "/" + s->name);
    else slices_[s->ns + "/" + s->name] = std::move(*s);
  }
  changed();
}

bool ServiceCache::synced() const {
  std::lock_guard lock(mu_);
  return servicesListed_ && slicesListed_;
}

std::size_t ServiceCache::services() const {
  std::lock_guard lock(mu_);
  return services_.size();
}

Expected<ServiceTarget> ServiceCache::service(const std::string& ns, const std::string& name, const std::string& portSpec) const {
  std::lock_guard lock(mu_);
  if (!servicesListed_ || !slicesListed_) return proto::error(proto::ErrorCode::Unavailable, "colo-node has not listed Services and EndpointSlices yet");
  auto it = services_.find(ns + "/" + name);
  if (it == services_.end()) return proto::error(proto::ErrorCode::NotFound, "no service " + ns + "/" + name);
  const Service& svc = it->second;
  const bool byNumber = allDigits(portSpec);
  auto p = std::find_if(svc.ports.begin(), svc.ports.end(), [&](const ServicePort& sp) {
    return sp.protocol == "TCP" && (byNumber ? std::to_string(sp.port) == portSpec : sp.name == portSpec);
  });
  if (p == svc.ports.end()) return proto::error(proto::ErrorCode::NotFound, "service " + ns + "/" + name + " has no TCP port " + portSpec);
  ServiceTarget t{ns, name, svc.clusterIP, *p, {}};
  // A slice's port of the same name carries the number its backends listen on (a named
  // targetPort is resolved per pod by the EndpointSlice controller).
  for (const auto& [key, slice] : slices_) {
    if (slice.ns != ns || slice.service != name) continue;
    auto sp = std::find_if(slice.ports.begin(), slice.ports.end(), [&](const ServicePort& x) { return x.name == p->name && x.protocol == "TCP"; });
    if (sp == slice.ports.end() || sp->port == 0) continue;
    for (const auto& e : slice.endpoints) {
      if (e.ready) t.ready.push_back({e.address, e.nodeName, e.podNs, e.podName, sp->port});
    }
  }
  return t;
}

std::optional<std::string> ServiceCache::podAddress(const std::string& ns, const std::string& name) const {
  std::lock_guard lock(mu_);
  for (const auto& [key, slice] : slices_) {
    for (const auto& e : slice.endpoints) {
      if (e.podNs == ns && e.podName == name) return e.address;
    }
  }
  return std::nullopt;
}

}  // namespace colo::node::kube

namespace colo::node::kube {

std::vector<LocalFrontend> ServiceCache::localFrontends(const std::string& node, const std::function<bool(const std::string&)>& localPod) const {
  std::vector<LocalFrontend> out;
  std::lock_guard lock(mu_);
  if (!servicesListed_ || !slicesListed_) return out;
  // Only the Services that ask are looked at; their slices found in one pass.
  std::map<std::string, std::vector<const EndpointSlice*>> slicesOf;
  for (const auto& [key, svc] : services_) {
    if (svc.preferLocal && !svc.clusterIPs.empty()) slicesOf[key];
  }
  if (slicesOf.empty()) return out;
  for (const auto& [key, slice] : slices_) {
    auto it = slicesOf.find(slice.ns + "/" + slice.service);
    if (it != slicesOf.end()) it->second.push_back(&slice);
  }
  for (const auto& [key, slices] : slicesOf) {
    const Service& svc = services_.at(key);
    for (const auto& ip : svc.clusterIPs) {
      const bool v6 = ip.find(':') != std::string::npos;
      for (const auto& p : svc.ports) {
        if (p.protocol != "TCP" || p.port == 0) continue;
        LocalFrontend f{svc.ns, svc.name, ip, p.port, {}};
        for (const EndpointSlice* slice : slices) {
          // The slice's port of the same name is the number the backends listen on.
          auto sp = std::find_if(slice->ports.begin(), slice->ports.end(), [&](const ServicePort& x) { return x.name == p.name && x.protocol == "TCP"; });
          if (sp == slice->ports.end() || sp->port == 0) continue;
          for (const auto& e : slice->endpoints) {
            if (!e.ready || (e.address.find(':') != std::string::npos) != v6) continue;
            if (!e.nodeName.empty() && e.nodeName != node) continue;
            if (!localPod(e.address)) continue;
            f.backends.push_back({e.address, sp->port});
          }
        }
        if (f.backends.empty()) continue;
        std::sort(f.backends.begin(), f.backends.end());
        f.backends.erase(std::unique(f.backends.begin(), f.backends.end()), f.backends.end());
        // Session affinity: the connect program picks at random, so every caller on this node gets
        // one backend (the first in order), which stays while the backend set is unchanged.
        if (svc.clientIpAffinity) f.backends.resize(1);
        out.push_back(std::move(f));
      }
    }
  }
  return out;
}

}  // namespace colo::node::kube
