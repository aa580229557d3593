// colo-cni: a chained CNI plugin. Prints only the result or the error JSON on stdout.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "dispatcher.h"
#include "spec_version.h"

namespace {

constexpr std::size_t kMaxStdin = 16 << 20;

bool readStdin(std::string& out) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) return true;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > kMaxStdin) return false;
  }
}

void writeAll(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  if (argc > 1 && std::string(argv[1]) == "--version") {
    std::printf("colo-cni %s (CNI %s)\n", COLO_VERSION, colo::cni::supportedList().c_str());
    return 0;
  }
  auto getenv = colo::cni::processGetenv();
  if (!getenv("CNI_COMMAND")) {
    std::fprintf(stderr, "colo-cni %s: a chained CNI plugin; run by a container runtime. CNI protocol versions supported: %s\n",
                 COLO_VERSION, colo::cni::supportedList().c_str());
    return 1;
  }
  std::string input;
  colo::cni::RunResult r;
  // VERSION reads stdin too: it answers in the cniVersion it was asked with.
  if (!readStdin(input) && getenv("CNI_COMMAND") != "VERSION") {
    r = {1, colo::cni::CniError{colo::cni::Code::IoFailure, "cannot read network configuration from stdin", ""}.toJson("1.1.0")};
  } else {
    r = colo::cni::dispatch(getenv, input, colo::cni::realDependencies());
  }
  writeAll(STDOUT_FILENO, r.out);
  return r.exitCode;
}
