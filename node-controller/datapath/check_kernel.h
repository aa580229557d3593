// `colo-node check-kernel`: the datapath self-test alone, so that an operator can try a node's
// kernel before installing colo. It runs in a cgroup and a pin directory of its own (made under
// the cgroup v2 root and the bpffs, removed at the end), so nothing else on the node is spliced.
#pragma once

#include <cstdio>

#include "datapath/selftest.h"

namespace colo::node {

// Prints the report to `out`; 0 when every check passed, 1 when one failed (the verdict line says
// whether pods declaring colo.dev/splice may still be spliced), 2 when the test could not run.
int checkKernel(std::FILE* out);

// The report's text (exposed for unit tests).
std::string selfTestReport(const SelfTestResult& r, const std::string& guard);

}  // namespace colo::node
