// libFuzzer target over everything a runtime or a pod can send colo: CNI env + stdin through the
// real dispatcher (with a fake agent), wire frames, byte quantities. The first byte picks the
// surface. Built with clang -fsanitize=fuzzer,address (test/fuzz/CMakeLists.txt).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <string>

#include "colo/common/quantity.h"
#include "colo/common/wire.h"
#include "dispatcher.h"

namespace {

using namespace colo;

struct NullAgent final : cni::AgentClient {
  Expected<nlohmann::json, cni::AgentFailure> call(nlohmann::json, int) override {
    return nlohmann::json{{"ok", true}, {"optedIn", true}, {"key", "k"}};
  }
};

void fuzzCni(const std::string& in) {
  // Layout: env lines "K=V\n" until an empty line, then stdin.
  std::map<std::string, std::string> env;
  std::size_t pos = 0;
  while (pos < in.size()) {
    const auto nl = in.find('\n', pos);
    const std::string line = in.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? in.size() : nl + 1;
    if (line.empty()) break;
    const auto eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  const std::string stdinData = in.substr(std::min(pos, in.size()));
  cni::Dependencies deps;
  deps.setupLogging = false;
  deps.spoolDir = "/proc/colo-fuzz-no-spool";  // never a real directory, whatever agentSocket the input names
  deps.agent = [](const cni::PluginConfig&) { return std::make_unique<NullAgent>(); };
  deps.openNetns = [](const std::string&) -> Expected<UniqueFd> { return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); };
  auto r = cni::dispatch([&](const char* k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  }, stdinData, deps);
  // Whatever happened, stdout is exactly one JSON document (or empty on DEL/CHECK/STATUS/GC success).
  if (!r.out.empty() && nlohmann::json::parse(r.out, nullptr, false).is_discarded()) __builtin_trap();
  if (r.exitCode != 0 && r.out.empty()) __builtin_trap();
}

void fuzzWire(const std::string& in) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return;
  if (::send(sv[0], in.data(), in.size(), MSG_DONTWAIT) >= 0) {
    auto m = wire::recv(sv[1]);
    if (m) (void)wire::validateRequest(m->body);
  }
  ::close(sv[0]);
  ::close(sv[1]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: fuzzCni(in); break;
    case 1: fuzzWire(in); break;
    default: (void)quantity::parseBytes(in); break;
  }
  return 0;
}
