#include "chain_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>

#include "colo/common/files.h"

extern char** environ;

namespace colo::chain {
namespace {

using nlohmann::json;

std::string findPlugin(const std::string& type, const std::string& cniPath) {
  std::stringstream ss(cniPath);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const std::string p = dir + "/" + type;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

}  // namespace

// Stderr is inherited.
PluginRun exec(const std::string& path, const std::vector<std::string>& env, const std::string& input) {
  PluginRun r;
  const auto t0 = std::chrono::steady_clock::now();
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
    r.exitCode = -1;
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<char*> argv{const_cast<char*>(path.c_str()), nullptr};
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, path.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  if (rc != 0) {
    ::close(in[1]);
    ::close(out[0]);
    r.exitCode = -1;
    r.out = std::string("spawn failed: ") + std::to_string(rc);
    return r;
  }
  std::size_t done = 0;
  while (done < input.size()) {
    const ssize_t n = ::write(in[1], input.data() + done, input.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(in[1]);
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(out[0], buf, sizeof(buf));
    if (n <= 0) break;
    r.out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.millis = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

namespace {

json pluginConfig(const json& list, const json& plugin, const Request& req, const json& prev) {
  json c = plugin;
  c["cniVersion"] = list.value("cniVersion", "1.0.0");
  c["name"] = list.value("name", "");
  if (!prev.is_null()) c["prevResult"] = prev;
  // Capabilities the plugin declares and the runtime has values for go into runtimeConfig.
  if (plugin.contains("capabilities") && plugin["capabilities"].is_object()) {
    json rc = json::object();
    for (const auto& [cap, on] : plugin["capabilities"].items()) {
      if (on == true && req.capabilityArgs.contains(cap)) rc[cap] = req.capabilityArgs[cap];
    }
    if (!rc.empty()) c["runtimeConfig"] = rc;
  }
  if (req.command == "GC") c["cni.dev/valid-attachments"] = req.validAttachments;
  return c;
}

}  // namespace

Expected<json> loadConflist(const std::string& path) {
  auto text = files::read(path);
  if (!text) return text.error();
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("plugins")) return Error::make("invalid_argument", path + " is not a conflist");
  return j;
}

Outcome run(const json& conflist, const Request& req) {
  Outcome o;
  const json& plugins = conflist["plugins"];
  std::vector<std::size_t> order(plugins.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = req.command == "DEL" ? order.size() - 1 - i : i;

  json prev = req.command == "ADD" ? json(nullptr) : req.prevResult;
  for (std::size_t i : order) {
    const json& plugin = plugins[i];
    const std::string type = plugin.value("type", "");
    const std::string path = findPlugin(type, req.cniPath);
    if (path.empty()) {
      o.ok = false;
      o.error = {{"code", 999}, {"msg", "plugin " + type + " not found in CNI_PATH"}};
      return o;
    }
    std::vector<std::string> env = {"CNI_COMMAND=" + req.command, "CNI_PATH=" + req.cniPath, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    if (req.command == "ADD" || req.command == "DEL" || req.command == "CHECK") {
      env.push_back("CNI_CONTAINERID=" + req.containerId);
      env.push_back("CNI_NETNS=" + req.netns);
      env.push_back("CNI_IFNAME=" + req.ifname);
      env.push_back("CNI_ARGS=" + req.cniArgs);
    }
    PluginRun r = exec(path, env, pluginConfig(conflist, plugin, req, prev).dump());
    r.type = type;
    o.runs.push_back(r);
    if (r.exitCode != 0) {
      o.ok = false;
      o.error = json::parse(r.out, nullptr, false);
      if (o.error.is_discarded()) o.error = {{"code", 999}, {"msg", "plugin " + type + " exited " + std::to_string(r.exitCode)}, {"details", r.out}};
      if (req.command != "DEL") return o;  // libcni stops; DEL keeps going and reports the first error
      continue;
    }
    if (req.command == "ADD") {
      prev = json::parse(r.out, nullptr, false);
      if (prev.is_discarded()) {
        o.ok = false;
        o.error = {{"code", 999}, {"msg", "plugin " + type + " printed no JSON result"}, {"details", r.out}};
        return o;
      }
    }
  }
  if (req.command == "ADD") o.result = prev;
  return o;
}

}  // namespace colo::chain
