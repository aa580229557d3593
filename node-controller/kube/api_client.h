// A small Kubernetes API client over cpp-httplib (OpenSSL): plain requests with a deadline, and a
// streamed GET for watches. One connection per call: requests are rare (a list, a watch, an
// occasional GET or Event), so simplicity wins over connection reuse.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "colo/common/error.h"
#include "kube/kube_config.h"

namespace httplib {
class ClientImpl;
}

namespace colo::node::kube {

struct ApiResult {
  int status = 0;
  std::string body;
};

struct StreamEnd {
  int status = 0;      // HTTP status; 0 when no response came
  bool clean = false;  // the server ended the response (chunked terminator) rather than the connection dying
  std::string error;   // why it was not clean
};

class ApiClient {
 public:
  explicit ApiClient(ApiEndpoint endpoint);
  ~ApiClient();

  // A request that must be done by `timeout`. A 401 re-reads the token and tries once more.
  // Transport failures are errors ("unavailable"); any HTTP status is a result.
  Expected<ApiResult> request(const std::string& method, const std::string& path, const std::string& body,
                              std::chrono::milliseconds timeout);
  // A streamed GET: bytes go to onData as they arrive (return false to stop). `idle` bounds the
  // silence between two reads. A non-200 body lands in errorBody.
  StreamEnd stream(const std::string& path, std::chrono::seconds idle,
                       const std::function<bool(const char*, std::size_t)>& onData, std::string& errorBody);
  // Unblocks every request() and stream() in progress, and refuses new ones (shutdown).
  void abortStreams();
  const ApiEndpoint& endpoint() const { return endpoint_; }

 private:
  struct Registration;
  Expected<std::unique_ptr<httplib::ClientImpl>> connect() const;
  ApiEndpoint endpoint_;
  mutable TokenSource tokens_;
  std::mutex mu_;
  std::set<httplib::ClientImpl*> streams_;
  bool aborted_ = false;
};

// Percent-encodes a query or path value (RFC 3986 unreserved characters kept).
std::string urlEncode(const std::string& s);

}  // namespace colo::node::kube
