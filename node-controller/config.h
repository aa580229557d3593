// colo-node's configuration: defaults, then the YAML file, then flags.
#pragma once

#include <string>
#include <vector>

#include "colo/common/error.h"

namespace colo::node {

struct Config {
  std::string nodeName;                         // default: hostname
  std::string runDir = "/run/colo";             // pods/<uid>/ lives here
  std::string cniSocket = "/run/colo/cni.sock";  // colo-cni talks to us here (0600, dir 0700)
  std::string stateDir = "/run/colo/state";     // what survives our restart
  std::string httpAddress = "127.0.0.1:9756";   // /healthz /readyz /metrics /debug/pods; empty: off
  std::string exposeDebugPods = "false";        // "true": /debug/pods also to clients not on this host
  std::string logFormat = "text";
  std::string logLevel = "info";
  std::string logFile;
  std::string mode = "standalone";              // standalone (CNI alone) or kubernetes (also watch the API)
  std::string endpointName = "colo";            // abstract socket @<endpointName> in every pod
  std::string hugepageSize = "2Mi";             // 2Mi, or 1Gi where the kernel has it
  std::string hugepagesBudget = "1Gi";          // all pods' hugetlbfs mounts together, never exceeded
  std::string datapath = "auto";                // sockmap splice: auto (on if the self-test passes), on, off
  std::string cgroupPath;                       // where sock_ops attaches; empty: the detected cgroup v2 root
  // ClusterIP -> local backend at connect (kubernetes mode): auto (on unless datapath is off), on, off
  std::string serviceTranslation = "auto";
  std::string bpfPinDir = "/sys/fs/bpf/colo";   // pinned maps and links
  std::string legacyBpfPinDir;                  // an older colo's pin dir to take over (datapath.h)
  // Kubernetes mode
  std::string kubeconfig;                       // empty: in-cluster (service account)
  std::string serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";
  std::string watchTimeoutSeconds = "300";      // per watch request; silence past it (+5 s) restarts the watch
  std::string listPageSize = "500";             // pods per list page (limit/continue)
  // When set, at SIGTERM colo-node asks the API for this DaemonSet (in podNamespace): gone or being
  // deleted means colo is being uninstalled, and colo-node removes everything it put on the node.
  std::string daemonSetName;
  std::string podNamespace;
  // colo-node's own pod (downward API): Events about the node's chain go there, and the
  // pre-delete hook's colo.dev/uninstall annotation on it decides the shutdown.
  std::string podName;
  std::string podUid;
  // The installer sidecar's report (colo-cni-installer --status-file): whether colo-cni is in the
  // node's CNI chain. When set, colo-node is not ready without it. Empty: not checked.
  std::string cniChainStatusFile;
  // `colo-node mark-uninstall` (the chart's pre-delete hook): colo's pods, by label selector in
  // podNamespace, and how long to wait for their acknowledgements.
  std::string hookSelector;
  std::string hookTimeoutSeconds = "60";
};

struct ParsedArgs {
  Config config;
  bool showVersion = false;
  bool showHelp = false;
  bool uninstall = false;  // `colo-node uninstall`: remove everything colo pinned and attached
  bool checkConfig = false;  // `colo-node check-config`: parse and validate, then exit
  bool checkKernel = false;  // `colo-node check-kernel`: run the datapath self-test alone, print it, exit
  bool markUninstall = false;  // `colo-node mark-uninstall`: the chart's pre-delete hook
};

// Loads YAML text over `base`. Unknown keys and wrong types are errors that name the key.
Expected<Config> applyYaml(const std::string& yamlText, Config base);

// Parses argv: --config FILE is read first, then every other flag overrides it. "{node}" in
// bpfPinDir becomes the node name (dots, which bpffs refuses, as underscores).
Expected<ParsedArgs> parseArgs(const std::vector<std::string>& args);

std::string usage();

Status validate(const Config& c);

}  // namespace colo::node
