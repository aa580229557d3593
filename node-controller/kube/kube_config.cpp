#include "kube/kube_config.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <optional>

#include "colo/common/files.h"

namespace colo::node::kube {
namespace {

Error bad(const std::string& where, const std::string& what) { return Error::make("invalid_argument", where + ": " + what); }

Expected<std::string> base64Decode(const std::string& in) {
  std::string clean;
  for (char c : in) {
    if (!std::isspace(static_cast<unsigned char>(c))) clean += c;
  }
  if (clean.size() % 4 != 0) return Error::make("invalid_argument", "not base64 (length)");
  std::string out(clean.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(clean.data()),
                                static_cast<int>(clean.size()));
  if (n < 0) return Error::make("invalid_argument", "not base64");
  std::size_t len = static_cast<std::size_t>(n);
  for (std::size_t i = clean.size(); i > 0 && clean[i - 1] == '='; --i) --len;  // EVP_DecodeBlock keeps padding bytes
  out.resize(len);
  return out;
}

std::string relativeTo(const std::string& path, const std::string& baseFile) {
  if (path.empty() || path[0] == '/') return path;
  return (std::filesystem::path(baseFile).parent_path() / path).string();
}

// Finds the entry named `name` in a kubeconfig list (clusters, users, contexts) and returns its body.
std::optional<YAML::Node> named(const YAML::Node& list, const std::string& name, const char* field) {
  if (!list || !list.IsSequence()) return std::nullopt;
  for (const auto& item : list) {
    if (item["name"] && item["name"].as<std::string>() == name && item[field] && item[field].IsMap()) return item[field];
  }
  return std::nullopt;
}

// "<key>-data" (base64) or "<key>" (a file), read into `out`.
Status dataOrFile(const YAML::Node& node, const std::string& key, const std::string& kubeconfig, std::string& out) {
  if (node[key + "-data"]) {
    auto d = base64Decode(node[key + "-data"].as<std::string>());
    if (!d) return bad(kubeconfig, key + "-data: " + d.error().message);
    out = *d;
  } else if (node[key]) {
    auto text = files::read(relativeTo(node[key].as<std::string>(), kubeconfig));
    if (!text) return bad(kubeconfig, key + ": " + text.error().message);
    out = *text;
  }
  return {};
}

}  // namespace

Status parseServerUrl(const std::string& url, ApiEndpoint& out) {
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    out.tls = true;
    out.port = 443;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    out.tls = false;
    out.port = 80;
    rest = url.substr(7);
  } else {
    return Error::make("invalid_argument", "server '" + url + "' must start with https:// or http://");
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    if (rest.find_first_not_of('/', slash) != std::string::npos) return Error::make("invalid_argument", "server '" + url + "': a path prefix is not supported");
    rest.resize(slash);
  }
  std::string portText;
  if (!rest.empty() && rest[0] == '[') {  // [v6]:port
    auto close = rest.find(']');
    if (close == std::string::npos) return Error::make("invalid_argument", "server '" + url + "': unterminated [");
    out.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') portText = rest.substr(close + 2);
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    out.host = rest.substr(0, colon);
    portText = rest.substr(colon + 1);
  } else {
    out.host = rest;
  }
  if (out.host.empty()) return Error::make("invalid_argument", "server '" + url + "' has no host");
  if (!portText.empty()) {
    char* end = nullptr;
    const long p = std::strtol(portText.c_str(), &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535) return Error::make("invalid_argument", "server '" + url + "': bad port");
    out.port = static_cast<int>(p);
  }
  return {};
}

Expected<ApiEndpoint> inClusterEndpoint(const std::string& saDir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port) {
    return Error::make("invalid_argument", "not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set (set kubeconfig to run outside a pod)");
  }
  ApiEndpoint ep;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  if (auto s = parseServerUrl("https://" + h + ":" + port, ep); !s) return s.error();
  auto ca = files::read(saDir + "/ca.crt");
  if (!ca) return Error::make("invalid_argument", "in-cluster CA: " + ca.error().message);
  ep.caPem = *ca;
  ep.tokenFile = saDir + "/token";
  ep.source = "in-cluster";
  TokenSource probe(ep);
  if (probe.current().empty()) return Error::make("invalid_argument", "in-cluster token " + ep.tokenFile + " is missing or empty");
  return ep;
}

Expected<ApiEndpoint> kubeconfigEndpoint(const std::string& path) {
  auto text = files::read(path);
  if (!text) return text.error();
  try {
    YAML::Node root = YAML::Load(*text);
    if (!root.IsMap()) return bad(path, "not a kubeconfig (not a mapping)");
    if (!root["current-context"]) return bad(path, "no current-context");
    const auto ctxName = root["current-context"].as<std::string>();
    auto ctx = named(root["contexts"], ctxName, "context");
    if (!ctx) return bad(path, "context '" + ctxName + "' not found");
    const auto clusterName = (*ctx)["cluster"] ? (*ctx)["cluster"].as<std::string>() : "";
    const auto userName = (*ctx)["user"] ? (*ctx)["user"].as<std::string>() : "";
    auto clusterNode = named(root["clusters"], clusterName, "cluster");
    if (!clusterNode || !(*clusterNode)["server"]) return bad(path, "cluster '" + clusterName + "' not found or has no server");
    const YAML::Node& cluster = *clusterNode;
    ApiEndpoint ep;
    ep.source = path;
    if (auto s = parseServerUrl(cluster["server"].as<std::string>(), ep); !s) return bad(path, s.error().message);
    ep.insecureSkipVerify = cluster["insecure-skip-tls-verify"] && cluster["insecure-skip-tls-verify"].as<bool>();
    if (auto s = dataOrFile(cluster, "certificate-authority", path, ep.caPem); !s) return s.error();
    if (auto userNode = named(root["users"], userName, "user")) {
      const YAML::Node& user = *userNode;
      if (auto s = dataOrFile(user, "client-certificate", path, ep.clientCertPem); !s) return s.error();
      if (auto s = dataOrFile(user, "client-key", path, ep.clientKeyPem); !s) return s.error();
      if (user["token"]) ep.token = user["token"].as<std::string>();
      if (user["tokenFile"]) ep.tokenFile = relativeTo(user["tokenFile"].as<std::string>(), path);
      if (user["exec"] || user["auth-provider"]) return bad(path, "user '" + userName + "': exec and auth-provider credentials are not supported");
    }
    if (ep.clientCertPem.empty() != ep.clientKeyPem.empty()) return bad(path, "client certificate and key must come together");
    return ep;
  } catch (const YAML::Exception& e) {
    return bad(path, std::string("not valid YAML: ") + e.what());
  }
}

std::string TokenSource::current() {
  std::lock_guard lock(mu_);
  if (file_.empty()) return fixed_;
  struct stat st{};
  if (::stat(file_.c_str(), &st) != 0) return cached_;  // keep the last good token while the file is replaced
  const std::int64_t mtime = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (mtime != mtimeNs_ || st.st_size != size_) {
    if (auto t = files::read(file_)) {
      std::string tok = *t;
      while (!tok.empty() && std::isspace(static_cast<unsigned char>(tok.back()))) tok.pop_back();
      cached_ = tok;
      mtimeNs_ = mtime;
      size_ = st.st_size;
    }
  }
  return cached_;
}

void TokenSource::refresh() {
  std::lock_guard lock(mu_);
  mtimeNs_ = -1;
}

}  // namespace colo::node::kube
