#include "kube/pod_watcher.h"

#include <spdlog/spdlog.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

#include "kube/line_decoder.h"
#include "kube/pod_parse.h"
#include "pods/pod.h"

namespace colo::node::kube {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t kApplySamples = 4096;


std::string messageOf(const std::string& body) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) return j["message"].get<std::string>();
  return body.substr(0, 200);
}
}  // namespace

PodWatcher::PodWatcher(ApiClient& api, WatcherSettings settings, PodWatcherSink& sink, Metrics& metrics)
    : api_(api), settings_(std::move(settings)), sink_(sink), metrics_(metrics) {
  metrics_.describe("colo_kube_lists_total", "counter", "Full lists of this node's pods, by why they were needed.");
  metrics_.describe("colo_kube_watch_ends_total", "counter", "Watch streams that ended, by how.");
  metrics_.describe("colo_kube_watch_events_total", "counter", "Watch events received, by type.");
  metrics_.describe("colo_kube_objects_refused_total", "counter", "Objects from the API colo could not use (no metadata.uid, an event over the line limit), by where.");
  metrics_.describe("colo_kube_synced", "gauge", "1 once the pod list has been read and the watch follows it.");
  metrics_.describe("colo_kube_event_apply_seconds", "gauge", "From a watch event's arrival to colo applying it, by what it changed (on: colo turned on, endpoint and map entry in place; off; updated; unchanged; not_held; deleted), over the last 4096 of each.");
  metrics_.describe("colo_kube_event_apply_samples", "gauge", "Events behind colo_kube_event_apply_seconds.");
  metrics_.set("colo_kube_synced", {}, 0);
}

PodWatcher::~PodWatcher() { stop(); }

void PodWatcher::start() { thread_ = std::thread([this] { run(); }); }

void PodWatcher::stop() {
  stopping_ = true;
  waitCv_.notify_all();
  api_.abortStreams();
  if (thread_.joinable()) thread_.join();
}

std::string PodWatcher::selector() const { return "fieldSelector=" + urlEncode("spec.nodeName=" + settings_.nodeName); }

void PodWatcher::setError(const std::string& e) {
  std::lock_guard lock(mu_);
  lastError_ = e;
}

void PodWatcher::clearError() {
  std::lock_guard lock(mu_);
  if (!lastError_.empty()) spdlog::info("kube: recovered (last error was: {})", lastError_);
  lastError_.clear();
}

void PodWatcher::sleepBackoff(int failures) {
  auto d = settings_.backoffBase * (1LL << std::min(failures, 16));
  d = std::min<std::chrono::milliseconds>(d, settings_.backoffMax);
  std::uniform_real_distribution<double> jitter(0.5, 1.0);  // spread a fleet of agents apart
  const auto wait = std::chrono::milliseconds(static_cast<long long>(static_cast<double>(d.count()) * jitter(rng_)));
  std::unique_lock lock(waitMu_);
  waitCv_.wait_for(lock, wait, [this] { return stopping_.load(); });
}

void PodWatcher::run() {
  // This thread applies pod changes (endpoint, datapath map) as they arrive. A little more weight
  // (nice -5, within colo-node's own cgroup) keeps the agent's other threads from delaying that
  // by whole scheduler ticks. Without CAP_SYS_NICE it simply stays at 0.
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), -5) != 0) {
    spdlog::debug("kube: watcher thread priority unchanged: {}", Error::fromErrno("setpriority").message);
  }
  bool needList = true;
  int failures = 0;
  std::string listReason = "start";
  while (!stopping_) {
    if (needList) {
      metrics_.add("colo_kube_lists_total", {{"reason", listReason}});
      if (!list()) {
        if (stopping_) break;
        sleepBackoff(failures++);
        listReason = "retry";
        continue;
      }
      needList = false;
      failures = 0;
    }
    bool progressed = false;
    const End end = watch(progressed);
    if (stopping_ || end == End::Stopped) break;
    if (progressed) failures = 0;  // only failures in a row count towards a relist
    static const char* names[] = {"expired", "closed", "silent", "dropped", "refused", "too_long", "stopped"};
    metrics_.add("colo_kube_watch_ends_total", {{"how", names[static_cast<int>(end)]}});
    switch (end) {
      case End::Expired:  // our resourceVersion is too old: only a new list is consistent
        spdlog::info("kube: watch expired (410); listing again");
        needList = true;
        listReason = "expired";
        synced_ = false;
        metrics_.set("colo_kube_synced", {}, 0);
        break;
      case End::Closed:  // the server's timeout: carry on from where we are
        failures = 0;
        break;
      case End::Silent:
        spdlog::warn("kube: watch silent for {} s; restarting it", settings_.watchTimeoutSeconds + 5);
        break;
      case End::TooLong:  // the same event would come again from the same resourceVersion: list instead
        needList = true;
        listReason = "too_long";
        break;
      case End::Dropped:
      case End::Refused:
        sleepBackoff(failures++);
        if (failures >= 3) {  // a stream that keeps failing may hide a lost event: start clean
          needList = true;
          listReason = "errors";
        }
        break;
      case End::Stopped:
        break;
    }
  }
}

bool PodWatcher::list() {
  const std::int64_t listStart = nowUnixMs();
  std::vector<PodMeta> all;
  std::set<std::string> unidentified;
  std::string cont, rv;
  bool firstPage = true;
  for (int page = 0;; ++page) {
    std::string path = "/api/v1/pods?" + selector() + "&limit=" + std::to_string(settings_.pageSize);
    if (!cont.empty()) path += "&continue=" + urlEncode(cont);
    auto res = api_.request("GET", path, "", settings_.requestTimeout);
    if (!res) {
      setError("list: " + res.error().message);
      spdlog::warn("kube: listing pods of node {}: {}", settings_.nodeName, res.error().message);
      return false;
    }
    if (res->status == 410) {  // the continue token expired mid-list: a consistent list must start over
      spdlog::info("kube: list continuation expired after {} pages; starting the list over", page);
      all.clear();
      unidentified.clear();
      cont.clear();
      firstPage = true;  // the new list's resourceVersion is the one to watch from, not the abandoned one's
      continue;
    }
    if (res->status != 200) {
      setError("list: HTTP " + std::to_string(res->status) + ": " + messageOf(res->body));
      spdlog::warn("kube: listing pods: HTTP {}: {}", res->status, messageOf(res->body));
      return false;
    }
    auto j = json::parse(res->body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("items") || !j["items"].is_array()) {
      setError("list: the response is not a PodList");
      return false;
    }
    for (const auto& item : j["items"]) {
      if (auto p = podFromApi(item)) {
        all.push_back(std::move(*p));
        continue;
      }
      // Logged, never silently dropped; and its pod is never released on this list's word.
      spdlog::warn("kube: list returned {} that colo cannot use; ignored", identify(item));
      metrics_.add("colo_kube_objects_refused_total", {{"where", "list"}});
      const auto nn = namespacedName(item);
      unidentified.insert(nn.empty() ? std::string("*") : nn);
    }
    const json md = j.value("metadata", json::object());
    if (firstPage) rv = md.value("resourceVersion", "");
    firstPage = false;
    cont = md.value("continue", "");
    if (cont.empty()) break;
    if (stopping_) return false;
  }
  {
    std::lock_guard lock(mu_);
    byUid_.clear();
    uidByName_.clear();
    for (const auto& p : all) {
      byUid_[p.uid] = p;
      uidByName_[p.podNamespace + "/" + p.name] = p.uid;
    }
    resourceVersion_ = rv;
    lastError_.clear();
  }
  sink_.synced(all, listStart, unidentified);
  synced_ = true;
  metrics_.set("colo_kube_synced", {}, 1);
  spdlog::info("kube: {} pods on node {} at resourceVersion {}; watching", all.size(), settings_.nodeName, rv);
  return true;
}

PodWatcher::End PodWatcher::watch(bool& progressed) {
  std::string rv;
  {
    std::lock_guard lock(mu_);
    rv = resourceVersion_;
  }
  const std::string path = "/api/v1/pods?" + selector() + "&watch=1&allowWatchBookmarks=true&resourceVersion=" + urlEncode(rv) +
                           "&timeoutSeconds=" + std::to_string(settings_.watchTimeoutSeconds);
  LineDecoder decoder(settings_.maxLine);
  End end = End::Closed;
  bool ended = false;
  auto lastByte = Clock::now();
  std::string errorBody;
  auto res = api_.stream(path, std::chrono::seconds(settings_.watchTimeoutSeconds + 5), [&](const char* data, std::size_t n) {
    const auto arrival = Clock::now();
    lastByte = arrival;
    if (!progressed) {
      progressed = true;  // bytes of a 200 watch: the API answers again
      clearError();
    }
    const bool ok = decoder.feed(data, n, [&](std::string_view line) {
      if (!ended) handleEvent(line, end, arrival);
      if (end == End::Expired || end == End::Dropped) ended = true;
    });
    if (!ok) {
      spdlog::error("kube: a watch event is longer than {} bytes; not decoded; listing again", settings_.maxLine);
      metrics_.add("colo_kube_objects_refused_total", {{"where", "too_long"}});
      setError("watch: an event longer than " + std::to_string(settings_.maxLine) + " bytes");
      end = End::TooLong;
      ended = true;
    }
    return !ended && !stopping_;
  }, errorBody);
  if (stopping_) return End::Stopped;
  if (ended) return end;
  // Nothing at all (not even headers) or nothing more for the whole idle limit: a stuck stream.
  if (!res.clean && Clock::now() - lastByte >= std::chrono::seconds(settings_.watchTimeoutSeconds + 4)) return End::Silent;
  if (res.status == 410) return End::Expired;
  if (res.status != 200) {
    setError(res.status == 0 ? "watch: " + res.error : "watch: HTTP " + std::to_string(res.status) + ": " + messageOf(errorBody));
    spdlog::warn("kube: {}", res.status == 0 ? "watch: " + res.error : "watch: HTTP " + std::to_string(res.status) + ": " + messageOf(errorBody));
    return res.status == 0 ? End::Dropped : End::Refused;
  }
  if (!res.clean) {
    spdlog::warn("kube: watch stream cut ({}); {} bytes of an unfinished event dropped", res.error, decoder.pending());
    setError("watch: " + res.error);
    return End::Dropped;
  }
  clearError();  // a watch the server ended cleanly: the API works
  return End::Closed;
}

void PodWatcher::handleEvent(std::string_view line, End& end, Clock::time_point arrival) {
  auto ev = parseWatchEvent(line);
  if (!ev) {
    spdlog::warn("kube: watch sent a line that is not an event; restarting the watch");
    end = End::Dropped;
    return;
  }
  metrics_.add("colo_kube_watch_events_total", {{"type", ev->type}});
  if (ev->type == "ERROR") {
    const int code = statusCode(ev->object);
    spdlog::info("kube: watch ERROR event {}: {}", code, ev->object.value("message", ""));
    end = code == 410 ? End::Expired : End::Dropped;
    return;
  }
  const std::string rv = ev->object.is_object() && ev->object.contains("metadata") && ev->object["metadata"].is_object()
                             ? ev->object["metadata"].value("resourceVersion", "")
                             : "";
  if (ev->type == "BOOKMARK") {
    if (!rv.empty()) {
      std::lock_guard lock(mu_);
      resourceVersion_ = rv;
    }
    return;
  }
  auto pod = podFromApi(ev->object);
  if (!pod) {
    // Logged, never silently dropped; without a uid it names no held pod, so it releases none.
    spdlog::warn("kube: watch {} event for {} that colo cannot use; ignored", ev->type, identify(ev->object));
    metrics_.add("colo_kube_objects_refused_total", {{"where", "watch"}});
    return;
  }
  std::string change = "deleted";
  if (ev->type == "DELETED") {
    {
      std::lock_guard lock(mu_);
      byUid_.erase(pod->uid);
      uidByName_.erase(pod->podNamespace + "/" + pod->name);
      if (!rv.empty()) resourceVersion_ = rv;
    }
    sink_.deleted(*pod);
  } else if (ev->type == "ADDED" || ev->type == "MODIFIED") {
    {
      std::lock_guard lock(mu_);
      byUid_[pod->uid] = *pod;
      uidByName_[pod->podNamespace + "/" + pod->name] = pod->uid;
      if (!rv.empty()) resourceVersion_ = rv;
    }
    change = sink_.upserted(*pod);
  } else {
    return;
  }
  recordApply(change, std::chrono::duration<double>(Clock::now() - arrival).count());
}

void PodWatcher::recordApply(const std::string& change, double seconds) {
  std::lock_guard lock(mu_);
  Window& w = apply_[change];
  if (w.samples.size() < kApplySamples) {
    w.samples.push_back(seconds);
  } else {
    w.samples[w.next] = seconds;
  }
  w.next = (w.next + 1) % kApplySamples;
}

void PodWatcher::publishMetrics() const {
  std::map<std::string, std::vector<double>> windows;
  {
    std::lock_guard lock(mu_);
    for (const auto& [change, w] : apply_) windows[change] = w.samples;
  }
  for (auto& [change, sorted] : windows) {
    std::sort(sorted.begin(), sorted.end());
    auto q = [&](double f) { return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(f * static_cast<double>(sorted.size())))]; };
    metrics_.set("colo_kube_event_apply_seconds", {{"change", change}, {"quantile", "0.5"}}, q(0.5));
    metrics_.set("colo_kube_event_apply_seconds", {{"change", change}, {"quantile", "0.99"}}, q(0.99));
    metrics_.set("colo_kube_event_apply_seconds", {{"change", change}, {"quantile", "1"}}, sorted.back());
    metrics_.set("colo_kube_event_apply_samples", {{"change", change}}, static_cast<double>(sorted.size()));
  }
}

std::optional<PodMeta> PodWatcher::lookup(const std::string& ns, const std::string& name, const std::string& uid,
                                          Clock::time_point deadline) {
  {
    std::lock_guard lock(mu_);
    auto byName = uidByName_.find(ns + "/" + name);
    if (byName != uidByName_.end() && (uid.empty() || byName->second == uid)) return byUid_.at(byName->second);
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() < 5) return std::nullopt;
  auto res = api_.request("GET", "/api/v1/namespaces/" + urlEncode(ns) + "/pods/" + urlEncode(name), "", left);
  if (!res || res->status != 200) {
    spdlog::info("kube: GET pod {}/{}: {}", ns, name, res ? "HTTP " + std::to_string(res->status) : res.error().message);
    return std::nullopt;
  }
  auto j = json::parse(res->body, nullptr, false);
  return j.is_discarded() ? std::nullopt : podFromApi(j);
}

std::size_t PodWatcher::cachedPods() const {
  std::lock_guard lock(mu_);
  return byUid_.size();
}

json PodWatcher::status() const {
  std::lock_guard lock(mu_);
  return {{"synced", synced_.load()}, {"resourceVersion", resourceVersion_}, {"pods", byUid_.size()}, {"lastError", lastError_},
          {"server", api_.endpoint().host + ":" + std::to_string(api_.endpoint().port)}, {"source", api_.endpoint().source}};
}

}  // namespace colo::node::kube
