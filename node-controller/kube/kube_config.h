// Where the Kubernetes API is and how to prove who we are: in-cluster (the service account's
// token and CA) or a kubeconfig file (for running colo-node outside a pod).
#pragma once

#include <chrono>
#include <mutex>
#include <string>

#include "colo/common/error.h"

namespace colo::node::kube {

struct ApiEndpoint {
  std::string host;  // name or address, without brackets
  int port = 443;
  bool tls = true;
  bool insecureSkipVerify = false;
  std::string caPem;                    // trust anchors; empty: the system's
  std::string clientCertPem, clientKeyPem;
  std::string token;                    // a fixed bearer token
  std::string tokenFile;                // a bearer token re-read when the file changes (bound tokens rotate)
  std::string source;                   // "in-cluster" or the kubeconfig path, for messages
};

// KUBERNETES_SERVICE_HOST/PORT and <saDir>/{token,ca.crt}.
Expected<ApiEndpoint> inClusterEndpoint(const std::string& serviceAccountDir);
// current-context of a kubeconfig: server, certificate-authority(-data), client-certificate(-data),
// client-key(-data), token, tokenFile, insecure-skip-tls-verify. Relative paths are relative to
// the file, as kubectl reads them.
Expected<ApiEndpoint> kubeconfigEndpoint(const std::string& path);
// Splits https://host:port; a path after the authority is refused.
Status parseServerUrl(const std::string& url, ApiEndpoint& out);

// The bearer token, re-read when its file's mtime or size changes or when told it was refused.
class TokenSource {
 public:
  explicit TokenSource(const ApiEndpoint& ep) : fixed_(ep.token), file_(ep.tokenFile) {}
  std::string current();
  void refresh();  // after a 401: read the file again even if it looks unchanged

 private:
  std::string fixed_, file_, cached_;
  std::int64_t mtimeNs_ = -1;
  std::int64_t size_ = -1;
  std::mutex mu_;
};

}  // namespace colo::node::kube
