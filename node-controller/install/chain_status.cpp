#include "install/chain_status.h"

#include <spdlog/spdlog.h>

#include "colo/common/files.h"

namespace colo::node {

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
