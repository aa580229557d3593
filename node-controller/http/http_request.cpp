#include "http/http_request.h"

#include <cctype>

namespace colo::node::http {

namespace {

bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!std::isalpha(c)) return false;
  return true;
}

}  // namespace

RequestHead parseRequestHead(std::string_view received) {
  RequestHead h;
  const auto end = received.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (received.size() >= kMaxRequestHead) h.state = RequestHead::State::TooLarge;
    return h;
  }
  h.headBytes = end + 4;
  if (h.headBytes > kMaxRequestHead) return h.state = RequestHead::State::TooLarge, h;
  const std::string_view line = received.substr(0, received.find("\r\n"));
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) return h.state = RequestHead::State::Bad, h;
  const std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1), version = line.substr(sp2 + 1);
  if (!isToken(method) || target.empty() || target.front() != '/' || version.rfind("HTTP/1.", 0) != 0) return h.state = RequestHead::State::Bad, h;
  h.method = std::string(method);
  h.path = std::string(target.substr(0, target.find('?')));
  h.state = RequestHead::State::Complete;
  return h;
}

const char* reasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

std::string serialize(const Response& r) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reasonPhrase(r.status) + "\r\n";
  out += "Content-Type: " + r.contentType + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  if (r.status == 405) out += "Allow: GET, HEAD\r\n";
  out += "Connection: close\r\n\r\n";
  if (!r.headOnly) out += r.body;
  return out;
}

}  // namespace colo::node::http
