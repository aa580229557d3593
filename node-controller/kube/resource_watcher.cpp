#include "kube/resource_watcher.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "kube/line_decoder.h"
#include "kube/pod_parse.h"

namespace colo::node::kube {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

ResourceWatcher::ResourceWatcher(ApiClient& api, std::string path, std::string kind, WatcherSettings settings, Sink sink, Metrics& metrics)
    : api_(api), path_(std::move(path)), kind_(std::move(kind)), settings_(std::move(settings)), sink_(std::move(sink)), metrics_(metrics) {
  metrics_.describe("colo_kube_resource_synced", "gauge", "1 once a kind of object (services, endpointslices) is listed and watched.");
  metrics_.set("colo_kube_resource_synced", {{"kind", kind_}}, 0);
}

ResourceWatcher::~ResourceWatcher() { stop(); }

void ResourceWatcher::start() { thread_ = std::thread([this] { run(); }); }

void ResourceWatcher::stop() {
  stopping_ = true;
  waitCv_.notify_all();
  api_.abortStreams();
  if (thread_.joinable()) thread_.join();
}

void ResourceWatcher::sleepBackoff(int failures) {
  auto d = std::min<std::chrono::milliseconds>(settings_.backoffBase * (1LL << std::min(failures, 16)), settings_.backoffMax);
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  std::unique_lock lock(waitMu_);
  waitCv_.wait_for(lock, std::chrono::milliseconds(static_cast<long long>(static_cast<double>(d.count()) * jitter(rng_))),
                   [this] { return stopping_.load(); });
}

void ResourceWatcher::run() {
  bool needList = true;
  int failures = 0;
  while (!stopping_) {
    if (needList) {
      if (!list()) {
        if (stopping_) break;
        sleepBackoff(failures++);
        continue;
      }
      needList = false;
      failures = 0;
    }
    const End end = watch();
    if (stopping_ || end == End::Stopped) break;
    switch (end) {
      case End::Expired:
        spdlog::info("kube: {} watch expired (410); listing again", kind_);
        needList = true;
        break;
      case End::Closed:
        failures = 0;
        break;
      case End::Silent:
      case End::Dropped:
      case End::Refused:
        sleepBackoff(failures++);
        if (failures >= 3) needList = true;  // a stream that keeps failing may hide a lost event
        break;
      case End::Stopped:
        break;
    }
  }
}

bool ResourceWatcher::list() {
  std::size_t count = 0;
  std::string cont, rv;
  sink_.listBegin();
  for (int page = 0;; ++page) {
    std::string path = path_ + "?limit=" + std::to_string(settings_.pageSize);
    if (!cont.empty()) path += "&continue=" + urlEncode(cont);
    auto res = api_.request("GET", path, "", settings_.requestTimeout);
    if (!res || (res->status != 200 && res->status != 410)) {
      spdlog::warn("kube: listing {}: {}", kind_, res ? "HTTP " + std::to_string(res->status) : res.error().message);
      return false;
    }
    if (res->status == 410) {  // the continue token expired mid-list: start over
      sink_.listBegin();
      count = 0;
      cont.clear();
      continue;
    }
    auto j = json::parse(res->body, nullptr, false);
    res->body = std::string();  // the text goes before the items are kept
    if (!j.is_object() || !j.contains("items") || !j["items"].is_array()) {
      spdlog::warn("kube: listing {}: the response is not a list", kind_);
      return false;
    }
    for (const auto& item : j["items"]) sink_.listItem(item);
    count += j["items"].size();
    const json md = j.value("metadata", json::object());
    if (page == 0) rv = md.value("resourceVersion", "");
    cont = md.value("continue", "");
    if (cont.empty()) break;
    if (stopping_) return false;
  }
  resourceVersion_ = rv;
  sink_.listEnd();
  // What the pages' JSON took goes back to the system, not only to the allocator.
  ::malloc_trim(0);
  synced_ = true;
  metrics_.set("colo_kube_resource_synced", {{"kind", kind_}}, 1);
  spdlog::info("kube: {} {} at resourceVersion {}; watching", count, kind_, rv);
  return true;
}

ResourceWatcher::End ResourceWatcher::watch() {
  const std::string path = path_ + "?watch=1&allowWatchBookmarks=true&resourceVersion=" + urlEncode(resourceVersion_) +
                           "&timeoutSeconds=" + std::to_string(settings_.watchTimeoutSeconds);
  LineDecoder decoder;
  End end = End::Closed;
  bool ended = false;
  auto lastByte = Clock::now();
  std::string errorBody;
  auto res = api_.stream(path, std::chrono::seconds(settings_.watchTimeoutSeconds + 5), [&](const char* data, std::size_t n) {
    lastByte = Clock::now();
    const bool ok = decoder.feed(data, n, [&](std::string_view line) {
      if (ended) return;
      auto ev = parseWatchEvent(line);
      if (!ev) {
        end = End::Dropped;
        ended = true;
        return;
      }
      if (ev->type == "ERROR") {
        end = statusCode(ev->object) == 410 ? End::Expired : End::Dropped;
        ended = true;
        return;
      }
      const json& md = ev->object.is_object() && ev->object.contains("metadata") ? ev->object["metadata"] : json::object();
      if (md.is_object() && md.contains("resourceVersion") && md["resourceVersion"].is_string()) {
        resourceVersion_ = md["resourceVersion"].get<std::string>();
      }
      if (ev->type == "ADDED" || ev->type == "MODIFIED" || ev->type == "DELETED") sink_.changed(ev->type, ev->object);
    });
    if (!ok) {
      end = End::Dropped;
      ended = true;
    }
    return !ended && !stopping_;
  }, errorBody);
  if (stopping_) return End::Stopped;
  if (ended) return end;
  if (!res.clean && Clock::now() - lastByte >= std::chrono::seconds(settings_.watchTimeoutSeconds + 4)) return End::Silent;
  if (res.status == 410) return End::Expired;
  if (res.status != 200) {
    spdlog::warn("kube: {} watch: {}", kind_, res.status == 0 ? res.error : "HTTP " + std::to_string(res.status));
    return res.status == 0 ? End::Dropped : End::Refused;
  }
  return res.clean ? End::Closed : End::Dropped;
}

}  // namespace colo::node::kube
