// The little HTTP/1.1 colo-node speaks: a GET's request head parsed, and the answer built.
// No sockets here, so every rule is unit-tested without a listener.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace colo::node::http {

inline constexpr std::size_t kMaxRequestHead = 8192;  // request line + headers; a probe sends ~100 B

struct RequestHead {
  enum class State { Incomplete, Complete, Bad, TooLarge } state = State::Incomplete;
  std::string method;
  std::string path;  // the target without its query
  std::size_t headBytes = 0;
};

// Looks at what a client sent so far. Complete once the blank line after the headers is there.
RequestHead parseRequestHead(std::string_view received);

struct Response {
  int status = 200;
  std::string contentType = "text/plain";
  std::string body;
  bool headOnly = false;  // HEAD: headers with the GET's length, no body
};

// The full response bytes, always `Connection: close` (one request per connection).
std::string serialize(const Response& r);

const char* reasonPhrase(int status);

}  // namespace colo::node::http
