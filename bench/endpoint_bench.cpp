// Endpoint timings.
//   add:   for each pod, exec colo-cni ADD, then connect to @colo inside the pod's netns and get a
//          hello reply; prints the time from the ADD exec to the hello reply.
//   probe: polls every pod's @colo until all answer hello (after colo-node was (re)started);
//          prints how long that took from the probe's own start.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "chain_runner.h"
#include "colo/common/netns.h"
#include "colo/common/wire.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

bool helloIn(int nsFd) {
  bool ok = false;
  (void)colo::netns::runIn(nsFd, [&]() -> colo::Status {
    auto s = colo::wire::connectUnix("@colo");
    if (!s) return s.error();
    auto r = colo::wire::call(s->get(), {{"v", 1}, {"id", 1}, {"op", "hello"}}, {}, std::chrono::milliseconds(500));
    ok = r && r->body.value("ok", false);
    return {};
  });
  return ok;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt;
  for (int i = 2; i + 1 < argc; i += 2) opt[argv[i]] = argv[i + 1];
  const std::string mode = argc > 1 ? argv[1] : "";
  const int pods = std::stoi(opt.count("--pods") ? opt["--pods"] : "0");
  std::vector<colo::UniqueFd> ns;
  for (int i = 0; i < pods; ++i) {
    auto fd = colo::netns::open("/var/run/netns/" + opt["--netns-prefix"] + std::to_string(i));
    if (!fd) {
      std::fprintf(stderr, "%s\n", fd.error().message.c_str());
      return 2;
    }
    ns.push_back(std::move(fd.value()));
  }
  if (mode == "probe") {
    const auto t0 = Clock::now();
    std::vector<bool> up(ns.size(), false);
    std::size_t count = 0;
    while (count < ns.size() && Clock::now() - t0 < std::chrono::seconds(10)) {
      for (std::size_t i = 0; i < ns.size(); ++i) {
        if (!up[i] && helloIn(ns[i].get())) {
          up[i] = true;
          ++count;
        }
      }
    }
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    std::printf("restart: %zu/%zu endpoints answer hello %.1f ms after colo-node was started\n", count, ns.size(), ms);
    std::ofstream(opt["--json"]) << json{{"pods", pods}, {"answering", count}, {"allAnsweringMs", ms}}.dump(2) << "\n";
    return count == ns.size() ? 0 : 1;
  }
  if (mode != "add") {
    std::fprintf(stderr, "usage: colo-bench-endpoint add|probe --pods N --netns-prefix P [--colo-cni F --socket S] --json OUT\n");
    return 2;
  }
  std::vector<double> addToHello, addOnly;
  int failures = 0;
  for (int i = 0; i < pods; ++i) {
    const json conf = {{"cniVersion", "1.1.0"}, {"name", "colo-bench-ep"}, {"type", "colo-cni"}, {"agentSocket", opt["--socket"]},
                       {"failurePolicy", "closed"}, {"logFile", ""},
                       {"runtimeConfig", {{"io.kubernetes.cri.pod-annotations", {{"colo.dev/enabled", "true"}}}}},
                       {"prevResult", {{"cniVersion", "1.1.0"}, {"ips", {{{"address", "198.18.6." + std::to_string(i + 1) + "/24"}}}}}}};
    const std::vector<std::string> env = {"CNI_COMMAND=ADD", "CNI_CONTAINERID=ep" + std::to_string(i),
                                          "CNI_NETNS=/var/run/netns/" + opt["--netns-prefix"] + std::to_string(i), "CNI_IFNAME=eth0",
                                          "CNI_PATH=/x", "CNI_ARGS=K8S_POD_UID=uid-ep" + std::to_string(i)};
    const auto t0 = Clock::now();
    auto run = colo::chain::exec(opt["--colo-cni"], env, conf.dump());
    const bool hello = run.exitCode == 0 && helloIn(ns[static_cast<std::size_t>(i)].get());
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!hello) {
      ++failures;
      continue;
    }
    addToHello.push_back(ms);
    addOnly.push_back(run.millis);
  }
  std::printf("\nADD to a connectable @colo, %d pods (ms)\n%-40s %9s %9s %9s\n", pods, "", "median", "p90", "p99");
  std::printf("%-40s %9.2f %9.2f %9.2f\n", "colo-cni ADD (exec to exit)", pct(addOnly, 50), pct(addOnly, 90), pct(addOnly, 99));
  std::printf("%-40s %9.2f %9.2f %9.2f\n", "ADD exec to hello reply over @colo", pct(addToHello, 50), pct(addToHello, 90), pct(addToHello, 99));
  std::printf("failures: %d\n", failures);
  std::ofstream(opt["--json"]) << json{{"pods", pods},
                                       {"addMs", {{"p50", pct(addOnly, 50)}, {"p99", pct(addOnly, 99)}}},
                                       {"addToHelloMs", {{"p50", pct(addToHello, 50)}, {"p99", pct(addToHello, 99)}}},
                                       {"failures", failures}}
                                      .dump(2)
                               << "\n";
  return failures == 0 ? 0 : 1;
}
