#include "http/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

namespace colo::node {

HttpServer::HttpServer(HttpSources sources) : sources_(std::move(sources)), server_(std::make_unique<httplib::Server>()) {}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::start(const std::string& address) {
  const auto colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(address.substr(colon + 1));
  } catch (const std::exception&) {
    return Error::make("invalid_argument", "httpAddress '" + address + "' has no valid port");
  }

  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    const auto r = sources_.readiness();
    res.status = r.value("ready", false) ? 200 : 503;
    res.set_content(r.dump(2) + "\n", "application/json");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(sources_.metrics(), "text/plain; version=0.0.4");
  });
  server_->Get("/debug/pods", [this](const httplib::Request& req, httplib::Response& res) {
    const auto& a = req.remote_addr;
    const bool local = a.rfind("127.", 0) == 0 || a == "::1" || a.rfind("::ffff:127.", 0) == 0;
    if (!local && !sources_.exposeDebugPods) {
      res.status = 403;
      res.set_content("/debug/pods is served only to this host (exposeDebugPods: false)\n", "text/plain");
      return;
    }
    res.set_content(sources_.pods().dump(2) + "\n", "application/json");
  });

  if (port == 0) {
    port_ = server_->bind_to_any_port(host);
    if (port_ < 0) return Error::make("io", "cannot bind HTTP on " + host);
  } else {
    if (!server_->bind_to_port(host, port)) return Error::make("io", "cannot bind HTTP on " + address + " (in use?)");
    port_ = port;
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  spdlog::info("http: serving /healthz /readyz /metrics /debug/pods on {}:{}", host, port_);
  return {};
}

void HttpServer::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace colo::node
