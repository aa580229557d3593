#include "endpoints/endpoint_manager.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "colo/common/files.h"
#include "colo/common/netns.h"
#include "pods/key_name.h"
#include "colo/common/quantity.h"
#include "colo/common/wire.h"

namespace colo::node {

namespace fs = std::filesystem;

EndpointManager::EndpointManager(const Config& config, SeqpacketServer& server, HugepageManager& hugepages, Metrics& metrics)
    : config_(config), server_(server), hugepages_(hugepages), metrics_(metrics), podsDir_(config.runDir + "/pods") {
  metrics_.describe("colo_endpoints", "gauge", "Pod endpoint listeners served (two per pod: abstract and filesystem).");
}

Status EndpointManager::prepare() { return files::makeDirs(podsDir_, 0755); }

Status EndpointManager::hugepagesFor(Pod& pod, bool failOpen, std::vector<std::string>& warnings) {
  pod.hugepageBytes = 0;
  if (!pod.annotations.is_object() || !pod.annotations.contains(kHugepagesAnnotation)) return {};
  const std::string who = "pod " + pod.podNamespace + "/" + pod.name + " (" + pod.key + ")";
  const auto& raw = pod.annotations[kHugepagesAnnotation];
  auto bytes = raw.is_string() ? quantity::parseBytes(raw.get<std::string>()) : Expected<std::uint64_t>(proto::error(proto::ErrorCode::InvalidArgument, "not a string"));
  Error err;
  if (!bytes) {
    metrics_.add("colo_hugepages_refused_total", {{"reason", "malformed"}});
    err = proto::error(proto::ErrorCode::InvalidArgument, who + ": annotation " + kHugepagesAnnotation + ": " + bytes.error().message);
  } else if (*bytes == 0) {
    return {};
  } else {
    auto size = hugepages_.mount(pod.key, dirFor(pod.key) + "/hugepages", *bytes);
    if (size) {
      pod.hugepageBytes = *size;
      return {};
    }
    err = Error{size.error().code, who + " " + size.error().message, size.error().errnum};
  }
  if (!failOpen) {
    spdlog::warn("hugepages refused: {}", err.message);
    return err;
  }
  spdlog::warn("hugepages refused: {}; the pod starts without hugepages (failurePolicy open)", err.message);
  warnings.push_back(err.message + "; started without hugepages");
  return {};
}

Status EndpointManager::attach(Pod& pod, int netnsFd, bool failOpen, std::vector<std::string>& warnings) {
  const std::string dir = dirFor(pod.key);
  // Root-owned and world-traversable: the pod's (possibly non-root) users reach colo.sock and
  // hugepages/ through their subPath mount; nobody but root can create anything here.
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return Error::fromErrno("mkdir(" + dir + ")");
  ::chmod(dir.c_str(), 0755);  // whatever the umask
  auto undo = [&] { (void)detach(pod); };

  if (auto s = hugepagesFor(pod, failOpen, warnings); !s) {
    undo();
    return s;
  }
  auto abstractFd = netns::listenAbstractIn(netnsFd, config_.endpointName);
  if (!abstractFd) {
    undo();
    return Error{abstractFd.error().code, "binding @" + config_.endpointName + " in the pod's netns: " + abstractFd.error().message,
                 abstractFd.error().errnum};
  }
  const std::string sockPath = dir + "/colo.sock";
  auto fsFd = wire::listenUnix(sockPath, 0666);  // any user of the pod may call; the netns check decides who is the pod
  if (!fsFd) {
    undo();
    return fsFd.error();
  }
  // Handed to the pods loop, never waited for: the loop picks them up on its next round.
  server_.addListener(std::move(abstractFd.value()), pod.key, "@" + config_.endpointName);
  server_.addListener(std::move(fsFd.value()), pod.key, sockPath);
  pod.endpointDir = dir;
  metrics_.set("colo_endpoints", {}, static_cast<double>(2 * track(pod.key, true)));
  return {};
}

Status EndpointManager::detach(const Pod& pod) {
  server_.removeListeners(pod.key);
  metrics_.set("colo_endpoints", {}, static_cast<double>(2 * track(pod.key, false)));
  const std::string dir = dirFor(pod.key);
  if (auto s = hugepages_.unmount(pod.key, dir + "/hugepages"); !s) return s;
  if (::unlink((dir + "/colo.sock").c_str()) != 0 && errno != ENOENT) return Error::fromErrno("unlink(" + dir + "/colo.sock)");
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return Error::fromErrno("rmdir(" + dir + ")");
  return {};
}

namespace {
// Whether a listening socket named `@name` exists in the netns `netnsFd`: /proc/thread-self/net/unix
// read from a thread inside it (abstract names are per netns). Nothing connects, so the pod's
// server sees no stray connection.
Status abstractListening(int netnsFd, const std::string& name) {
  bool found = false;
  auto s = netns::runIn(netnsFd, [&]() -> Status {
    auto text = files::read("/proc/thread-self/net/unix", 64u << 20);
    if (!text) return text.error();
    std::size_t pos = 0;
    const std::string want = "@" + name;
    while (pos < text->size()) {
      auto nl = text->find('\n', pos);
      if (nl == std::string::npos) nl = text->size();
      const std::string_view line(text->data() + pos, nl - pos);
      pos = nl + 1;
      // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = listening.
      const auto last = line.rfind(' ');
      if (last == std::string_view::npos || line.substr(last + 1) != want) continue;
      if (line.find(" 00010000 ") != std::string_view::npos) found = true;
    }
    return {};
  });
  if (!s) return s;
  if (!found) return proto::error(proto::ErrorCode::NotFound, "nothing listens on @" + name + " in the pod's network namespace");
  return {};
}
}  // namespace

Status EndpointManager::verify(const Pod& pod, int netnsFd) {
  const std::string dir = dirFor(pod.key);
  struct stat st{};
  if (::stat((dir + "/colo.sock").c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return proto::error(proto::ErrorCode::NotFound, dir + "/colo.sock is missing");
  }
  if (auto s = abstractListening(netnsFd, config_.endpointName); !s) return s;
  if (pod.hugepageBytes > 0) {
    if (auto s = hugepages_.verify(dir + "/hugepages", pod.hugepageBytes); !s) return s;
  }
  return {};
}

std::size_t EndpointManager::track(const std::string& key, bool attached) {
  std::lock_guard lock(mu_);
  if (attached) attached_.insert(key);
  else attached_.erase(key);
  return attached_.size();
}

std::string EndpointManager::dirName(const std::string& key) const {
  constexpr std::size_t kSunPath = sizeof(sockaddr_un::sun_path) - 1;  // a path socket's NUL
  const std::size_t room = podsDir_.size() + 1 + std::string_view("/colo.sock").size();
  return keyName(key, kSunPath > room ? kSunPath - room : 0);
}

void EndpointManager::removeOrphans(const std::vector<std::string>& heldKeys) {
  std::set<std::string> held;
  for (const auto& k : heldKeys) held.insert(dirName(k));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(podsDir_, ec)) {
    const std::string key = entry.path().filename().string();
    if (held.count(key)) continue;
    spdlog::info("endpoint {}: directory left without a pod; removed", key);
    Pod ghost;
    ghost.key = key;
    if (auto s = detach(ghost); !s) spdlog::warn("endpoint {}: {}", key, s.error().message);
  }
}

}  // namespace colo::node
