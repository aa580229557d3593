#include "config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <map>
#include <tuple>

#include "colo/common/files.h"
#include "colo/common/log.h"
#include "colo/common/quantity.h"

namespace colo::node {
namespace {

// One table: config key (YAML and --flag) to field.
const std::map<std::string, std::string Config::*>& fields() {
  static const std::map<std::string, std::string Config::*> m = {
      {"nodeName", &Config::nodeName},   {"runDir", &Config::runDir},       {"cniSocket", &Config::cniSocket},
      {"stateDir", &Config::stateDir},   {"httpAddress", &Config::httpAddress}, {"logFormat", &Config::logFormat},
      {"logLevel", &Config::logLevel},   {"logFile", &Config::logFile},     {"mode", &Config::mode},
      {"endpointName", &Config::endpointName}, {"hugepageSize", &Config::hugepageSize},
      {"hugepagesBudget", &Config::hugepagesBudget}, {"datapath", &Config::datapath}, {"serviceTranslation", &Config::serviceTranslation},
      {"cgroupPath", &Config::cgroupPath}, {"bpfPinDir", &Config::bpfPinDir}, {"legacyBpfPinDir", &Config::legacyBpfPinDir},
      {"kubeconfig", &Config::kubeconfig}, {"serviceAccountDir", &Config::serviceAccountDir},
      {"watchTimeoutSeconds", &Config::watchTimeoutSeconds}, {"listPageSize", &Config::listPageSize},
      {"daemonSetName", &Config::daemonSetName}, {"podNamespace", &Config::podNamespace},
      {"podName", &Config::podName}, {"podUid", &Config::podUid}, {"cniChainStatusFile", &Config::cniChainStatusFile},
      {"exposeDebugPods", &Config::exposeDebugPods}, {"hookSelector", &Config::hookSelector}, {"hookTimeoutSeconds", &Config::hookTimeoutSeconds},
  };
  return m;
}

std::string flagToKey(const std::string& flag) {
  // --cni-socket -> cniSocket
  std::string key;
  bool upper = false;
  for (char c : flag) {
    if (c == '-') {
      upper = true;
      continue;
    }
    key += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return key;
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

}  // namespace

Expected<Config> applyYaml(const std::string& yamlText, Config base) {
  YAML::Node root;
  try {
    root = YAML::Load(yamlText);
  } catch (const YAML::Exception& e) {
    return Error::make("invalid_argument", std::string("config is not valid YAML: ") + e.what());
  }
  if (root.IsNull()) return base;
  if (!root.IsMap()) return Error::make("invalid_argument", "config must be a YAML mapping");
  for (const auto& kv : root) {
    const auto key = kv.first.as<std::string>();
    auto it = fields().find(key);
    if (it == fields().end()) return Error::make("invalid_argument", "unknown config key '" + key + "'");
    if (!kv.second.IsScalar()) return Error::make("invalid_argument", "config key '" + key + "' must be a string");
    base.*(it->second) = kv.second.as<std::string>();
  }
  return base;
}

Expected<ParsedArgs> parseArgs(const std::vector<std::string>& args) {
  ParsedArgs out;
  std::map<std::string, std::string> overrides;
  std::string configFile;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--version") {
      out.showVersion = true;
      continue;
    }
    if (a == "uninstall" && i == 0) {
      out.uninstall = true;
      continue;
    }
    if (a == "check-config" && i == 0) {
      out.checkConfig = true;
      continue;
    }
    if (a == "check-kernel" && i == 0) {
      out.checkKernel = true;
      continue;
    }
    if (a == "mark-uninstall" && i == 0) {
      out.markUninstall = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      out.showHelp = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) return Error::make("invalid_argument", "unexpected argument '" + a + "'");
    std::string name = a.substr(2), value;
    const auto eq = name.find('=');
    if (eq != std::string::npos) name = name.substr(0, eq);
    // An unknown flag is named as such, never mistaken for a known one missing its value.
    if (name != "config" && !fields().count(flagToKey(name))) return Error::make("invalid_argument", "unknown flag --" + name);
    if (eq != std::string::npos) {
      value = a.substr(2 + eq + 1);
    } else {
      if (i + 1 >= args.size()) return Error::make("invalid_argument", "flag --" + name + " needs a value");
      value = args[++i];
    }
    if (name == "config") {
      configFile = value;
      continue;
    }
    const std::string key = flagToKey(name);
    if (!fields().count(key)) return Error::make("invalid_argument", "unknown flag --" + name);
    overrides[key] = value;
  }
  if (!configFile.empty()) {
    auto text = files::read(configFile);
    if (!text) return text.error();
    auto c = applyYaml(*text, out.config);
    if (!c) return Error::make("invalid_argument", configFile + ": " + c.error().message);
    out.config = std::move(c.value());
  }
  for (const auto& [k, v] : overrides) out.config.*(fields().at(k)) = v;
  if (out.config.nodeName.empty()) out.config.nodeName = hostname();
  if (auto at = out.config.bpfPinDir.find("{node}"); at != std::string::npos) {
    std::string node = out.config.nodeName;
    for (auto& ch : node) {
      if (ch == '.' || ch == '/') ch = '_';
    }
    out.config.bpfPinDir.replace(at, 6, node);
  }
  return out;
}

std::string usage() {
  return "usage: colo-node uninstall [--bpf-pin-dir D]     remove everything colo pinned and attached\n"
         "       colo-node mark-uninstall --pod-namespace NS --hook-selector SEL [--hook-timeout-seconds 60]\n"
         "                 [--kubeconfig F]   the chart's pre-delete hook: tell every colo-node colo is leaving\n"
         "       colo-node check-config [--config FILE] [flags] parse and validate the configuration, then exit\n"
         "       colo-node check-kernel                 run the datapath self-test alone (private cgroup and pin dir), print\n"
         "                                              the report; exit 0 when every check passes, 1 otherwise\n"
         "       colo-node [--config FILE] [--node-name N] [--run-dir D] [--cni-socket P] [--state-dir D]\n"
         "                 [--http-address HOST:PORT] [--log-format text|json] [--log-level L] [--log-file F]\n"
         "                 [--mode standalone|kubernetes] [--endpoint-name colo] [--hugepage-size 2Mi]\n"
         "                 [--hugepages-budget 1Gi] [--datapath auto|on|off] [--cgroup-path D]\n"
         "                 [--service-translation auto|on|off]\n"
         "                 [--bpf-pin-dir /sys/fs/bpf/colo] [--kubeconfig F] [--service-account-dir D]\n"
         "                 [--watch-timeout-seconds 300] [--list-page-size 500] [--daemon-set-name N]\n"
         "                 [--pod-namespace NS] [--pod-name N] [--pod-uid U] [--cni-chain-status-file F]\n"
         "                 [--expose-debug-pods false] [--legacy-bpf-pin-dir D]\n"
         "                 [--version]\n";
}

Status validate(const Config& c) {
  if (auto l = log::validate({.format = c.logFormat, .level = c.logLevel}); !l) return l;
  if (c.mode != "standalone" && c.mode != "kubernetes") {
    return Error::make("invalid_argument", "mode must be standalone or kubernetes, not '" + c.mode + "'");
  }
  for (auto [key, value, lo, hi] : {std::tuple{"watchTimeoutSeconds", &c.watchTimeoutSeconds, 1L, 3600L},
                                    std::tuple{"listPageSize", &c.listPageSize, 1L, 5000L},
                                    std::tuple{"hookTimeoutSeconds", &c.hookTimeoutSeconds, 1L, 3600L}}) {
    char* end = nullptr;
    const long v = std::strtol(value->c_str(), &end, 10);
    if (value->empty() || *end != '\0' || v < lo || v > hi) {
      return Error::make("invalid_argument", std::string(key) + " must be a whole number from " + std::to_string(lo) + " to " +
                                                 std::to_string(hi) + ", not '" + *value + "'");
    }
  }
  if (c.cniSocket.empty() || c.stateDir.empty() || c.runDir.empty()) return Error::make("invalid_argument", "cniSocket, stateDir and runDir must be set");
  if (c.endpointName.empty() || c.endpointName.size() > 64 || c.endpointName.find('/') != std::string::npos) {
    return Error::make("invalid_argument", "endpointName must be 1..64 characters without '/'");
  }
  for (const auto* q : {&c.hugepageSize, &c.hugepagesBudget}) {
    if (auto b = quantity::parseBytes(*q); !b) return Error::make("invalid_argument", b.error().message);
  }
  if (c.datapath != "auto" && c.datapath != "on" && c.datapath != "off") {
    return Error::make("invalid_argument", "datapath must be auto, on or off, not '" + c.datapath + "'");
  }
  if (c.serviceTranslation != "auto" && c.serviceTranslation != "on" && c.serviceTranslation != "off") {
    return Error::make("invalid_argument", "serviceTranslation must be auto, on or off, not '" + c.serviceTranslation + "'");
  }
  if (c.bpfPinDir.empty() || c.bpfPinDir.find("/sys/fs/bpf/") != 0) return Error::make("invalid_argument", "bpfPinDir must be under /sys/fs/bpf/");
  if (!c.legacyBpfPinDir.empty() && c.legacyBpfPinDir.find("/sys/fs/bpf/") != 0) {
    return Error::make("invalid_argument", "legacyBpfPinDir must be under /sys/fs/bpf/");
  }
  if (c.exposeDebugPods != "true" && c.exposeDebugPods != "false") {
    return Error::make("invalid_argument", "exposeDebugPods must be true or false, not '" + c.exposeDebugPods + "'");
  }
  if (!c.httpAddress.empty() && c.httpAddress.rfind(':') == std::string::npos) {
    return Error::make("invalid_argument", "httpAddress must be HOST:PORT, not '" + c.httpAddress + "'");
  }
  return {};
}

}  // namespace colo::node
