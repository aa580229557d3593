// colo-chain: a tiny CNI runtime for tests and the demo.
//   colo-chain ADD|DEL|CHECK|GC|STATUS --conflist F [--id ID] [--netns PATH] [--ifname eth0]
//              [--args K=V;..] [--cni-path DIRS] [--annotations JSON] [--cache DIR] [--valid JSON] [--no-prev]
// ADD stores its result in the cache dir as libcni does; DEL and CHECK read it from there.
#include <unistd.h>

#include <cstdio>
#include <map>

#include "chain_runner.h"
#include "colo/common/files.h"

int main(int argc, char** argv) {
  using nlohmann::json;
  if (argc < 2) {
    std::fprintf(stderr, "usage: colo-chain ADD|DEL|CHECK|GC|STATUS --conflist F [options]\n");
    return 2;
  }
  colo::chain::Request req;
  req.command = argv[1];
  req.cniPath = "/usr/lib/cni";
  std::map<std::string, std::string> opt;
  bool noPrev = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--no-prev") {
      noPrev = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "colo-chain: %s needs a value\n", a.c_str());
      return 2;
    }
    opt[a] = argv[++i];
  }
  auto list = colo::chain::loadConflist(opt["--conflist"]);
  if (!list) {
    std::fprintf(stderr, "colo-chain: %s\n", list.error().message.c_str());
    return 2;
  }
  req.containerId = opt.count("--id") ? opt["--id"] : "";
  req.netns = opt.count("--netns") ? opt["--netns"] : "";
  if (opt.count("--ifname")) req.ifname = opt["--ifname"];
  if (opt.count("--args")) req.cniArgs = opt["--args"];
  if (opt.count("--cni-path")) req.cniPath = opt["--cni-path"];
  if (opt.count("--annotations")) req.capabilityArgs["io.kubernetes.cri.pod-annotations"] = json::parse(opt["--annotations"]);
  if (opt.count("--valid")) req.validAttachments = json::parse(opt["--valid"]);
  const std::string cacheDir = opt.count("--cache") ? opt["--cache"] : "/tmp/colo-chain-cache";
  const std::string cacheFile = cacheDir + "/" + list->value("name", "net") + "-" + req.containerId + "-" + req.ifname + ".json";
  if ((req.command == "DEL" || req.command == "CHECK") && !noPrev) {
    if (auto cached = colo::files::read(cacheFile)) req.prevResult = json::parse(*cached, nullptr, false);
    if (req.prevResult.is_discarded()) req.prevResult = nullptr;
  }
  auto out = colo::chain::run(*list, req);
  if (!out.ok) {
    std::printf("%s\n", out.error.dump().c_str());
    return 1;
  }
  if (req.command == "ADD") {
    (void)colo::files::makeDirs(cacheDir, 0700);
    (void)colo::files::writeAtomic(cacheFile, out.result.dump(), 0600);
    std::printf("%s\n", out.result.dump().c_str());
  } else if (req.command == "DEL") {
    ::unlink(cacheFile.c_str());
  }
  return 0;
}
