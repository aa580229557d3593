#include "install/chain_status.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "colo/common/files.h"

namespace colo::node {

namespace {

bool namesColo(const nlohmann::json& j) {
  if (j.is_object()) {
    auto t = j.find("type");
    if (t != j.end() && t->is_string() && t->get<std::string>() == "colo-cni") return true;
  }
  if (j.is_object() || j.is_array()) return std::any_of(j.begin(), j.end(), [](const nlohmann::json& v) { return namesColo(v); });
  return false;
}

// The file runtimes load from `dir`: the first *.conf, *.conflist or *.json (libcni's order).
std::string firstConfig(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto ext = e.path().extension().string();
    if (e.is_regular_file(ec) && (ext == ".conf" || ext == ".conflist" || ext == ".json")) names.push_back(e.path().filename().string());
  }
  if (names.empty()) return "";
  return dir + "/" + *std::min_element(names.begin(), names.end());
}

// The installer's report is only as fresh as the installer (its sidecar may be dead, OOMKilled or
// stopped while the primary rewrites its file): "chained" is believed only while the file it
// names still has colo-cni in it and, when it was the file runtimes load, still is.
std::string contradicted(const nlohmann::json& st) {
  const std::string file = st.value("file", std::string());
  if (file.empty()) return "the installer named no file";
  auto text = files::read(file, 1 << 20);
  if (!text) return "cannot read " + file + " to confirm the installer's report: " + text.error().message;
  const auto doc = nlohmann::json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !namesColo(doc)) return "colo-cni is no longer in " + file + " (rewritten since the installer's report)";
  if (st.value("loaded", false)) {
    const std::string first = firstConfig(std::filesystem::path(file).parent_path().string());
    if (first != file) return first + " is loaded before " + file + ", which holds colo-cni";
  }
  return "";
}

}  // namespace

ChainStatus::ChainStatus(std::string statusFile, Metrics& metrics, std::function<void(bool, const std::string&)> onChange)
    : file_(std::move(statusFile)), metrics_(metrics), onChange_(std::move(onChange)) {
  metrics_.describe("colo_cni_chained", "gauge", "1 when colo-cni is in the node's CNI chain (as the installer reports it), else 0.");
  metrics_.set("colo_cni_chained", {}, 0);
  status_ = {{"chained", false}, {"message", "the installer has not reported yet (" + file_ + ")"}};
}

ChainStatus::~ChainStatus() { stop(); }

void ChainStatus::start() {
  refresh();
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::seconds(1));
      if (stopping_) break;
      lock.unlock();
      refresh();
      lock.lock();
    }
  });
}

void ChainStatus::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ChainStatus::refresh() {
  nlohmann::json st;
  if (auto text = files::read(file_, 64 << 10)) {
    st = nlohmann::json::parse(*text, nullptr, false);
    if (!st.is_object() || !st.contains("chained") || !st["chained"].is_boolean()) {
      st = {{"chained", false}, {"message", file_ + " is not a status the installer wrote"}};
    } else if (st["chained"].get<bool>()) {
      if (const std::string why = contradicted(st); !why.empty()) {
        st["chained"] = false;
        st["message"] = why + "; is the installer (the cni-chain container) running?";
      }
    }
  } else {
    st = {{"chained", false}, {"message", "the installer has not reported yet (" + file_ + ": " + text.error().message + ")"}};
  }
  const bool chained = st["chained"].get<bool>();
  const std::string message = st.value("message", std::string());
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    status_ = st;
    changed = last_ != (chained ? 1 : 0);
    last_ = chained ? 1 : 0;
  }
  metrics_.set("colo_cni_chained", {}, chained ? 1 : 0);
  if (!changed) return;
  if (chained) spdlog::info("cni: colo-cni is chained in {}", st.value("file", std::string("?")));
  else spdlog::warn("cni: colo-cni is NOT in the node's CNI chain: {}", message);
  if (onChange_) onChange_(chained, chained ? "colo-cni is chained in " + st.value("file", std::string("?")) : message);
}

bool ChainStatus::chained() const {
  std::lock_guard lock(mu_);
  return last_ == 1;
}

nlohmann::json ChainStatus::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

}  // namespace colo::node
