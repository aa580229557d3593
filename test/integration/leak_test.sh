#!/usr/bin/env bash
# 1000 ADD/DEL cycles with an endpoint and a hugepage mount each: colo-node's descriptors, threads,
# mounts and directories are the same afterwards.
source "$(dirname "$0")/lib.sh"

CYCLES=${COLO_LEAK_CYCLES:-1000}
reserve_hugepages 4
start_agent --hugepages-budget 4Mi --log-level info
make_netns "clk$TAG"
CONF='{"cniVersion":"1.1.0","name":"colo-lk","type":"colo-cni","agentSocket":"'$WORK/run/cni/cni.sock'","failurePolicy":"closed","logFile":"","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"colo.dev/enabled":"true","colo.dev/hugepages":"2Mi"}},"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"198.18.5.2/24"}]}}'
snapshot() {
  printf 'fds=%s threads=%s mounts=%s dirs=%s' "$(find "/proc/$AGENT_PID/fd" -mindepth 1 | wc -l)" \
    "$(find "/proc/$AGENT_PID/task" -mindepth 1 -maxdepth 1 | wc -l)" "$(grep -c "$WORK" /proc/mounts)" \
    "$(find "$WORK/run/pods" "$WORK/state/pods" -mindepth 1 2>/dev/null | wc -l)"
}
cycle() {
  env -i CNI_COMMAND="$1" CNI_CONTAINERID="lk$2" CNI_NETNS="/var/run/netns/clk$TAG" CNI_IFNAME=eth0 CNI_PATH=/x \
    CNI_ARGS="K8S_POD_UID=uid-lk$2" "$COLO_BIN/colo-cni" <<<"$CONF" >/dev/null
}
cycle ADD 0 && cycle DEL 0  # warm up lazily created state
BEFORE=$(snapshot)
failures=0
for i in $(seq 1 "$CYCLES"); do
  cycle ADD "$i" || failures=$((failures + 1))
  cycle DEL "$i" || failures=$((failures + 1))
done
AFTER=$(snapshot)
echo "before: $BEFORE"
echo "after:  $AFTER"
check "$CYCLES ADD/DEL cycles, none failed" test "$failures" -eq 0
check "each ADD got its hugepage mount and endpoint" \
  test "$(metric 'colo_cni_requests_total{verb="add",result="ok"}')" -eq $((CYCLES + 1))
check "no descriptor, thread, mount or directory leaked" test "$BEFORE" == "$AFTER"

finish
