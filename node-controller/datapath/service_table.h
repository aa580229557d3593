// The frontend map of the Service translation as colo-node wants it: LocalFrontends (from the
// Service cache) turned into BPF keys and values, diffed against what was written last, and
// written through a small interface (the BPF map, or a fake in unit tests). Says which Services
// started or stopped being translated, for the log and the metrics.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "colo/common/error.h"
#include "colo_types.h"
#include "kube/service_cache.h"

namespace colo::node {

static_assert(sizeof(colo_svc_key) == 24);
static_assert(sizeof(colo_svc_backend) == 20);
static_assert(sizeof(colo_svc_value) == 8 + 20 * COLO_SVC_MAX_BACKENDS);
static_assert(sizeof(colo_svc_orig) == 40);
static_assert(sizeof(colo_svc_caller) == 8);

class FrontendWriter {
 public:
  virtual ~FrontendWriter() = default;
  virtual Status put(const colo_svc_key& key, const colo_svc_value& value) = 0;
  virtual Status remove(const colo_svc_key& key) = 0;
};

// One key as a comparable tuple (family, addr, port, proto).
using FrontendId = std::tuple<std::uint32_t, std::uint32_t, std::uint32_t, std::uint32_t, std::uint32_t, std::uint16_t, std::uint16_t>;

struct ServiceChange {
  std::string service;  // namespace/name
  std::size_t backendsBefore = 0, backendsAfter = 0;  // over all its frontends; 0: not translated
};

class ServiceTable {
 public:
  // Makes the map hold exactly `frontends` (a frontend with more local backends than the map
  // holds keeps the first COLO_SVC_MAX_BACKENDS). Entries that went away are removed first, so a
  // connect never meets a backend that is gone for longer than this call. Returns per-Service
  // changes in backend count. A failed write is retried at the next apply.
  std::vector<ServiceChange> apply(const std::vector<kube::LocalFrontend>& frontends, FrontendWriter& writer);
  // Forget what was written (the map was replaced), so that the next apply writes everything.
  void reset() { written_.clear(); }
  // Local backends per translated Service ("namespace/name"), as last applied.
  std::map<std::string, std::size_t> backendsPerService() const;
  std::size_t frontends() const { return written_.size(); }

  // A LocalFrontend as BPF key and value; false when an address does not parse.
  static bool encode(const kube::LocalFrontend& f, colo_svc_key& key, colo_svc_value& value);

 private:
  struct Entry {
    colo_svc_key key;
    colo_svc_value value;
    std::string service;
  };
  std::map<FrontendId, Entry> written_;
};

FrontendId frontendId(const colo_svc_key& k);

}  // namespace colo::node
