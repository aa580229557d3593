// The colo wire protocol: SOCK_SEQPACKET, one JSON object per message (64 KiB at most),
// file descriptors attached with SCM_RIGHTS. See docs/protocol.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "colo/common/error.h"
#include "colo/common/protocol.h"
#include "colo/common/unique_fd.h"

namespace colo::wire {

using json = nlohmann::json;

constexpr int kVersion = proto::kVersion;
constexpr std::size_t kMaxMessage = proto::kMaxMessage;
constexpr std::size_t kMaxFds = proto::kMaxFds;

struct Message {
  json body;
  std::vector<UniqueFd> fds;
};

// The layer under send/recv: one record of raw bytes with descriptors (SCM_RIGHTS), for records
// that are not JSON (the channel offer on a dialed pair). Never raises SIGPIPE.
Status sendRaw(int sock, const void* data, std::size_t size, std::span<const int> fds, int flags = 0);
struct RawRecord {
  std::size_t size = 0;       // bytes received
  int flags = 0;              // msg_flags (MSG_TRUNC, MSG_CTRUNC)
  std::vector<UniqueFd> fds;  // owned: closed unless the caller keeps them
};
Expected<RawRecord> recvRaw(int sock, void* buf, std::size_t capacity, int flags = 0);

// Sends one message. Never raises SIGPIPE. With `nonBlocking`, a full peer fails with "timeout"
// instead of waiting (the agent never lets one slow pod stall its loop).
Status send(int sock, const json& body, std::span<const int> fds = {}, bool nonBlocking = false);

// Receives one message. Errors: "closed" (peer hung up), "too_large", "bad_request"
// (not a JSON object, or nested deeper than proto::kMaxDepth), "io", "timeout" (a non-blocking
// socket with nothing to read). Any descriptors that came with a bad message are closed.
Expected<Message> recv(int sock);

// Waits up to `timeout` for the socket to become readable; "timeout" error otherwise.
Status waitReadable(int sock, std::chrono::milliseconds timeout);

// Connects a SOCK_SEQPACKET socket. A path starting with '@' names an abstract socket. With
// `nonBlocking`, a listener whose backlog is full (a hung agent) fails at once with "unavailable"
// instead of blocking the caller; the socket is returned non-blocking.
Expected<UniqueFd> connectUnix(const std::string& path, bool nonBlocking = false);

// Binds and listens; removes a stale socket file first and sets `mode` on the file.
Expected<UniqueFd> listenUnix(const std::string& path, unsigned mode);

// One request, one reply, bounded in time. Checks that the reply echoes the id.
Expected<Message> call(int sock, const json& request, std::span<const int> fds, std::chrono::milliseconds timeout);

// Validates the envelope of a request: object with "v" == 1, string "op", integer "id".
Status validateRequest(const json& body);

}  // namespace colo::wire
