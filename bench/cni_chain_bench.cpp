// Side by side in one run: a chained ADD+DEL of bridge + host-local alone, and of the same chain
// with colo-cni appended (agent running, pod opted in). Iterations alternate which chain goes first.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "chain_runner.h"

namespace {

using nlohmann::json;

struct Series {
  std::vector<double> v;
  double pct(double p) const {
    if (v.empty()) return 0;
    auto s = v;
    std::sort(s.begin(), s.end());
    const auto idx = static_cast<std::size_t>(p / 100.0 * static_cast<double>(s.size() - 1) + 0.5);
    return s[std::min(idx, s.size() - 1)];
  }
};

struct Sample {
  double total = 0;     // ADD + DEL, ms
  double coloAdd = 0;   // colo-cni's own ADD invocation, ms
  double coloDel = 0;
  bool ok = true;
};

Sample cycle(const json& list, const std::string& id, const std::string& netns, const std::string& cniPath) {
  colo::chain::Request add;
  add.command = "ADD";
  add.containerId = id;
  add.netns = netns;
  add.cniPath = cniPath;
  add.cniArgs = "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=" + id + ";K8S_POD_UID=uid-" + id;
  add.capabilityArgs["io.kubernetes.cri.pod-annotations"] = {{"colo.dev/enabled", "true"}};
  Sample s;
  auto a = colo::chain::run(list, add);
  colo::chain::Request del = add;
  del.command = "DEL";
  del.prevResult = a.result;
  auto d = colo::chain::run(list, del);
  s.ok = a.ok && d.ok;
  if (!s.ok) std::fprintf(stderr, "cycle %s failed: %s %s\n", id.c_str(), a.error.dump().c_str(), d.error.dump().c_str());
  for (const auto& r : a.runs) {
    s.total += r.millis;
    if (r.type == "colo-cni") s.coloAdd = r.millis;
  }
  for (const auto& r : d.runs) {
    s.total += r.millis;
    if (r.type == "colo-cni") s.coloDel = r.millis;
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt;
  for (int i = 1; i + 1 < argc; i += 2) opt[argv[i]] = argv[i + 1];
  for (const char* k : {"--base", "--colo", "--netns-prefix", "--netns-count", "--pods", "--cni-path", "--json"}) {
    if (!opt.count(k)) {
      std::fprintf(stderr, "usage: colo-bench-cni --base F --colo F --netns-prefix P --netns-count K --pods N --cni-path D --json OUT\n");
      return 2;
    }
  }
  auto base = colo::chain::loadConflist(opt["--base"]);
  auto colo = colo::chain::loadConflist(opt["--colo"]);
  if (!base || !colo) {
    std::fprintf(stderr, "cannot load conflists\n");
    return 2;
  }
  const int pods = std::stoi(opt["--pods"]), nsCount = std::stoi(opt["--netns-count"]), warmup = 10;
  Series tBase, tColo, cAdd, cDel, paired;
  int failures = 0;
  for (int i = -warmup; i < pods; ++i) {
    const std::string ns = "/var/run/netns/" + opt["--netns-prefix"] + std::to_string((i + warmup) % nsCount);
    const std::string n = std::to_string(i + warmup);
    Sample b, c;
    if (i % 2 == 0) {
      b = cycle(*base, "b" + n, ns, opt["--cni-path"]);
      c = cycle(*colo, "c" + n, ns, opt["--cni-path"]);
    } else {
      c = cycle(*colo, "c" + n, ns, opt["--cni-path"]);
      b = cycle(*base, "b" + n, ns, opt["--cni-path"]);
    }
    failures += !b.ok + !c.ok;
    if (i < 0) continue;
    tBase.v.push_back(b.total);
    paired.v.push_back(c.total - b.total);
    tColo.v.push_back(c.total);
    cAdd.v.push_back(c.coloAdd);
    cDel.v.push_back(c.coloDel);
  }
  const double overhead = tColo.pct(50) - tBase.pct(50);
  std::printf("\nchained ADD+DEL, %d pods each, alternating order (ms)\n", pods);
  std::printf("%-42s %9s %9s %9s\n", "", "median", "p90", "p99");
  auto row = [](const char* name, const Series& s) { std::printf("%-42s %9.2f %9.2f %9.2f\n", name, s.pct(50), s.pct(90), s.pct(99)); };
  row("bridge + host-local", tBase);
  row("bridge + host-local + colo-cni", tColo);
  row("  of which colo-cni ADD (exec to exit)", cAdd);
  row("  of which colo-cni DEL (exec to exit)", cDel);
  row("paired difference (same iteration)", paired);
  std::printf("%-42s %9.2f ms (target < 5 ms)  ratio %.2fx\n", "colo-cni added at the median (of totals)", overhead, tColo.pct(50) / tBase.pct(50));
  std::printf("failed cycles: %d\n", failures);

  json out = {{"pods", pods},
              {"base", {{"p50", tBase.pct(50)}, {"p90", tBase.pct(90)}, {"p99", tBase.pct(99)}}},
              {"colo", {{"p50", tColo.pct(50)}, {"p90", tColo.pct(90)}, {"p99", tColo.pct(99)}}},
              {"pairedDifference", {{"p50", paired.pct(50)}, {"p99", paired.pct(99)}}},
              {"coloCniAdd", {{"p50", cAdd.pct(50)}, {"p99", cAdd.pct(99)}}},
              {"coloCniDel", {{"p50", cDel.pct(50)}, {"p99", cDel.pct(99)}}},
              {"overheadMedianMs", overhead},
              {"failures", failures}};
  std::ofstream(opt["--json"]) << out.dump(2) << "\n";
  return failures == 0 ? 0 : 1;
}
