#include "agent_client.h"

#include <unistd.h>

#include <span>

#include "colo/common/replies.h"
#include "colo/common/wire.h"

namespace colo::cni {
namespace {

class UnixAgentClient final : public AgentClient {
 public:
  UnixAgentClient(std::string path, std::chrono::milliseconds timeout) : path_(std::move(path)), timeout_(timeout) {}

  Expected<nlohmann::json, AgentFailure> call(nlohmann::json request, int fd) override {
    using Kind = AgentFailure::Kind;
    // Non-blocking all the way: a hung agent must never hold up pod creation past the timeout.
    auto sock = wire::connectUnix(path_, /*nonBlocking=*/true);
    if (!sock) return AgentFailure{Kind::Unreachable, sock.error().code, sock.error().message};
    request["v"] = wire::kVersion;
    request["id"] = static_cast<unsigned>(::getpid());
    // After this the answer no longer matters to us: the agent must not apply the request late.
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    request["deadlineUnixMs"] = std::chrono::duration_cast<std::chrono::milliseconds>(now + timeout_).count();
    const int fds[1] = {fd};
    auto reply = wire::call(sock->get(), request, fd >= 0 ? std::span<const int>(fds, 1) : std::span<const int>(), timeout_);
    if (!reply) {
      const auto& e = reply.error();
      const Kind kind = e.code == "timeout" ? Kind::Timeout : (e.code == "closed" || e.errnum == EPIPE) ? Kind::Unreachable : Kind::Protocol;
      return AgentFailure{kind, e.code, e.message};
    }
    auto head = proto::parseReplyHead(reply->body);
    if (!head) return AgentFailure{Kind::Protocol, head.error().code, "colo-node's reply: " + head.error().message};
    if (!head->ok) return AgentFailure{Kind::Rejected, std::string(proto::name(head->error.code)), head->error.message};
    return std::move(reply->body);
  }

 private:
  std::string path_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<AgentClient> makeUnixAgentClient(std::string socketPath, std::chrono::milliseconds timeout) {
  return std::make_unique<UnixAgentClient>(std::move(socketPath), timeout);
}

}  // namespace colo::cni
