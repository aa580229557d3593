// Services and EndpointSlices from the API, for dial by Kubernetes name
// (service/<namespace>/<name>:<port>, pod/<namespace>/<name>:<port>). Two ResourceWatchers fill
// it; the broker reads it on the loop thread, holding the lock only to copy what one dial needs.
#pragma once

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "colo/common/error.h"

namespace colo::node::kube {

struct ServicePort {
  std::string name, protocol;
  int port = 0;
};

struct Service {
  std::string ns, name;
  std::string clusterIP;  // "" or "None": headless
  std::vector<ServicePort> ports;
};

struct SliceEndpoint {
  std::string address, nodeName, podNs, podName;
  bool ready = true;  // the API: an absent condition means ready
};

struct EndpointSlice {
  std::string ns, name, service;
  std::vector<ServicePort> ports;  // name, protocol and the backends' port number
  std::vector<SliceEndpoint> endpoints;
};

std::optional<Service> serviceFromApi(const nlohmann::json& j);
std::optional<EndpointSlice> sliceFromApi(const nlohmann::json& j);

// One ready backend of a service port: where it is and the port it listens on.
struct Backend {
  std::string address, nodeName, podNs, podName;
  int targetPort = 0;
};

struct ServiceTarget {
  std::string ns, name, clusterIP;
  ServicePort port;
  std::vector<Backend> ready;
};

class ServiceCache {
 public:
  void replaceServices(const std::vector<nlohmann::json>& items);
  void replaceSlices(const std::vector<nlohmann::json>& items);
  // A watch event ("ADDED", "MODIFIED", "DELETED") of either kind.
  void serviceEvent(const std::string& type, const nlohmann::json& obj);
  void sliceEvent(const std::string& type, const nlohmann::json& obj);
  bool synced() const;

  // The service port `portSpec` (a number or a port name) of service ns/name with its ready
  // backends. Errors: "unavailable" (not listed yet), "not_found" (no such service or port).
  Expected<ServiceTarget> service(const std::string& ns, const std::string& name, const std::string& portSpec) const;
  // The address of pod ns/name as an EndpointSlice names it, if one does.
  std::optional<std::string> podAddress(const std::string& ns, const std::string& name) const;
  std::size_t services() const;

 private:
  mutable std::mutex mu_;
  bool servicesListed_ = false, slicesListed_ = false;
  std::map<std::string, Service> services_;      // "ns/name"
  std::map<std::string, EndpointSlice> slices_;  // "ns/sliceName"
};

}  // namespace colo::node::kube
