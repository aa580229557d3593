#include <cctype>
#include "kube/api_client.h"

#include <httplib.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <condition_variable>
#include <optional>
#include <thread>

namespace colo::node::kube {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr memBio(const std::string& pem) { return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))); }

// Every certificate in a PEM bundle, as a store the TLS context takes over.
Expected<X509_STORE*> storeFrom(const std::string& pem) {
  auto bio = memBio(pem);
  X509_STORE* store = X509_STORE_new();
  int n = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, cert);
    X509_free(cert);
    ++n;
  }
  if (n == 0) {
    X509_STORE_free(store);
    return Error::make("invalid_argument", "the CA bundle holds no PEM certificate");
  }
  return store;
}

std::string errorText(httplib::Error e) { return httplib::to_string(e); }

}  // namespace

// Lets abortStreams() reach a connection while a call is in progress.
struct ApiClient::Registration {
  Registration(ApiClient& c, httplib::ClientImpl* cli) : client(c), raw(cli) {
    std::lock_guard lock(client.mu_);
    ok = !client.aborted_;
    if (ok) client.streams_.insert(raw);
  }
  ~Registration() {
    std::lock_guard lock(client.mu_);
    client.streams_.erase(raw);
  }
  ApiClient& client;
  httplib::ClientImpl* raw;
  bool ok = false;
};

ApiClient::ApiClient(ApiEndpoint endpoint) : endpoint_(std::move(endpoint)), tokens_(endpoint_) {}
ApiClient::~ApiClient() { abortStreams(); }

Expected<std::unique_ptr<httplib::ClientImpl>> ApiClient::connect() const {
  std::unique_ptr<httplib::ClientImpl> cli;
  if (!endpoint_.tls) {
    cli = std::make_unique<httplib::ClientImpl>(endpoint_.host, endpoint_.port);
  } else {
    std::unique_ptr<httplib::SSLClient> ssl;
    if (!endpoint_.clientCertPem.empty()) {
      auto certBio = memBio(endpoint_.clientCertPem);
      auto keyBio = memBio(endpoint_.clientKeyPem);
      X509* cert = PEM_read_bio_X509(certBio.get(), nullptr, nullptr, nullptr);
      EVP_PKEY* key = PEM_read_bio_PrivateKey(keyBio.get(), nullptr, nullptr, nullptr);
      if (!cert || !key) {
        X509_free(cert);
        EVP_PKEY_free(key);
        return Error::make("invalid_argument", endpoint_.source + ": client certificate or key is not PEM");
      }
      ssl = std::make_unique<httplib::SSLClient>(endpoint_.host, endpoint_.port, cert, key);
      X509_free(cert);  // the TLS context holds its own references
      EVP_PKEY_free(key);
    } else {
      ssl = std::make_unique<httplib::SSLClient>(endpoint_.host, endpoint_.port);
    }
    if (!ssl->is_valid()) return Error::make("internal", "TLS client could not be set up");
    if (!endpoint_.caPem.empty()) {
      auto store = storeFrom(endpoint_.caPem);
      if (!store) return Error::make("invalid_argument", endpoint_.source + ": " + store.error().message);
      ssl->set_ca_cert_store(*store);
    }
    ssl->enable_server_certificate_verification(!endpoint_.insecureSkipVerify);
    cli = std::move(ssl);
  }
  cli->set_keep_alive(false);
  return cli;
}

namespace {
// Stops a call when its deadline passes: httplib's timeouts bound each connect and read, not the
// call as a whole (headers or a body that trickle in would take as long as they like).
class Watchdog {
 public:
  Watchdog(httplib::ClientImpl* cli, std::chrono::steady_clock::time_point deadline)
      : thread_([this, cli, deadline] {
          std::unique_lock lock(mu_);
          if (!cv_.wait_until(lock, deadline, [this] { return done_; })) {
            fired_ = true;
            cli->stop();
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool fired() {
    std::lock_guard lock(mu_);
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false, fired_ = false;
  std::thread thread_;
};
}  // namespace

Expected<ApiResult> ApiClient::request(const std::string& method, const std::string& path, const std::string& body,
                                       std::chrono::milliseconds timeout) {
  if (method != "GET" && method != "POST" && method != "PATCH") return Error::make("invalid_argument", "unsupported method " + method);
  // One deadline for everything: connect, TLS, headers, body, and the 401 retry.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string what = method + " " + endpoint_.host + ":" + std::to_string(endpoint_.port) + path;
  for (int attempt = 0;; ++attempt) {
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Error::make("timeout", what + ": no answer within " + std::to_string(timeout.count()) + " ms");
    auto cli = connect();
    if (!cli) return cli.error();
    Registration reg(*this, cli->get());
    if (!reg.ok) return Error::make("cancelled", "client shut down");
    const auto secs = left.count() / 1000000, usecs = left.count() % 1000000;
    (*cli)->set_connection_timeout(secs, usecs);
    (*cli)->set_read_timeout(secs, usecs);
    (*cli)->set_write_timeout(secs, usecs);
    httplib::Headers headers = {{"Accept", "application/json"}, {"User-Agent", "colo-node/" COLO_VERSION}};
    if (auto tok = tokens_.current(); !tok.empty()) headers.emplace("Authorization", "Bearer " + tok);
    std::optional<httplib::Result> res;
    bool timedOut = false;
    {
      Watchdog dog(cli->get(), deadline);
      res = method == "GET"    ? (*cli)->Get(path.c_str(), headers)
            : method == "POST" ? (*cli)->Post(path.c_str(), headers, body, "application/json")
                               : (*cli)->Patch(path.c_str(), headers, body, "application/merge-patch+json");
      timedOut = dog.fired();
    }
    if (timedOut) return Error::make("timeout", what + ": no answer within " + std::to_string(timeout.count()) + " ms");
    if (!*res) return Error::make("unavailable", what + ": " + errorText(res->error()));
    if ((*res)->status == 401 && attempt == 0 && !endpoint_.tokenFile.empty()) {
      tokens_.refresh();  // a rotated token: read it again and retry once, within what is left
      continue;
    }
    return ApiResult{(*res)->status, std::move((*res)->body)};
  }
}

StreamEnd ApiClient::stream(const std::string& path, std::chrono::seconds idle,
                           const std::function<bool(const char*, std::size_t)>& onData, std::string& errorBody) {
  auto cli = connect();
  if (!cli) return StreamEnd{0, false, cli.error().message};
  httplib::ClientImpl* raw = cli->get();
  Registration reg(*this, raw);
  if (!reg.ok) return StreamEnd{0, false, "client shut down"};
  raw->set_connection_timeout(5, 0);
  raw->set_read_timeout(idle.count(), 0);
  httplib::Headers headers = {{"Accept", "application/json"}, {"User-Agent", "colo-node/" COLO_VERSION}};
  if (auto tok = tokens_.current(); !tok.empty()) headers.emplace("Authorization", "Bearer " + tok);
  int status = 0;
  auto res = raw->Get(
      path.c_str(), headers,
      [&](const httplib::Response& r) {
        status = r.status;
        return true;
      },
      [&](const char* data, std::size_t n) {
        if (status != 200) {
          if (errorBody.size() < 65536) errorBody.append(data, n);
          return true;
        }
        return onData(data, n);
      });
  if (status == 401) tokens_.refresh();
  if (res) return StreamEnd{status, true, {}};
  return StreamEnd{status, false, endpoint_.host + ":" + std::to_string(endpoint_.port) + ": " + errorText(res.error())};
}

void ApiClient::abortStreams() {
  std::lock_guard lock(mu_);
  aborted_ = true;
  for (auto* c : streams_) c->stop();
}

std::string urlEncode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace colo::node::kube
