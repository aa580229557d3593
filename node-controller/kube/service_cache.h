// Services and EndpointSlices from the API, for dial by Kubernetes name
// (service/<namespace>/<name>:<port>, pod/<namespace>/<name>:<port>). Two ResourceWatchers fill
// it; the broker reads it on the loop thread, holding the lock only to copy what one dial needs.
#pragma once

#include <functional>
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
  std::vector<std::string> clusterIPs;  // spec.clusterIPs (dual stack), else clusterIP; none when headless
  // The Service asks for node-local traffic: spec.trafficDistribution PreferSameNode,
  // spec.internalTrafficPolicy Local, or the annotation colo.dev/prefer-local: "true".
  bool preferLocal = false;
  // spec.sessionAffinity ClientIP: a client must keep reaching one backend.
  bool clientIpAffinity = false;
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

// A Service port that colo translates on this node: its ClusterIP and port, and the ready
// backends that are opted-in pods of this node (address and the port they listen on).
struct LocalFrontend {
  std::string ns, name;  // the Service
  std::string clusterIP;
  int port = 0;
  struct Target {
    std::string address;
    int port = 0;
    auto operator<=>(const Target&) const = default;
  };
  std::vector<Target> backends;  // sorted, no duplicates; never empty
};

class ServiceCache {
 public:
  // Called after every change (list or watch event), outside the lock, on the watcher's thread.
  void setOnChange(std::function<void()> onChange);
  void replaceServices(const std::vector<nlohmann::json>& items);
  void replaceSlices(const std::vector<nlohmann::json>& items);
  // The same, item by item as a list's pages arrive (one watcher thread per kind): only the
  // parsed fields are kept, and what was there stays in use until the end.
  void beginServices();
  void addService(const nlohmann::json& item);
  void endServices();
  void beginSlices();
  void addSlice(const nlohmann::json& item);
  void endSlices();
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

  // Every TCP port of every Service that asks for node-local traffic, with its ready backends on
  // `node` (an endpoint naming another node is never taken) for which `localPod(address)` is
  // true; a port with no such backend is left out. Empty until both kinds are listed.
  std::vector<LocalFrontend> localFrontends(const std::string& node, const std::function<bool(const std::string&)>& localPod) const;

 private:
  void changed() const;
  mutable std::mutex mu_;
  std::function<void()> onChange_;  // set once, before the watchers start
  bool servicesListed_ = false, slicesListed_ = false;
  std::map<std::string, Service> services_;      // "ns/name"
  std::map<std::string, EndpointSlice> slices_;  // "ns/sliceName"
  // Lists in progress, each touched only by its kind's watcher thread.
  std::map<std::string, Service> listingServices_;
  std::map<std::string, EndpointSlice> listingSlices_;
};

}  // namespace colo::node::kube
