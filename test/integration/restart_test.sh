#!/usr/bin/env bash
# colo-node restarted (crashed, then stopped cleanly) under 100 pods: endpoints come back for every
# pod still alive, fast; pods whose netns vanished meanwhile are cleaned up.
source "$(dirname "$0")/lib.sh"

N=100
reserve_hugepages 16
start_agent --hugepages-budget 32Mi
CONF='{"cniVersion":"1.1.0","name":"colo-rs","type":"colo-cni","agentSocket":"'$WORK/run/cni/cni.sock'","failurePolicy":"closed","logFile":"'$WORK/colo-cni.log'"}'
add_pod() {
  local i=$1 ann='{"colo.dev/enabled":"true"}'
  ((i <= 10)) && ann='{"colo.dev/enabled":"true","colo.dev/hugepages":"2Mi"}'
  jq -c --arg ip "198.18.4.$i/24" --argjson ann "$ann" \
    '.prevResult={"cniVersion":"1.1.0","ips":[{"address":$ip}]} | .runtimeConfig={"io.kubernetes.cri.pod-annotations":$ann}' <<<"$CONF" |
    env -i CNI_COMMAND=ADD CNI_CONTAINERID="rs$i" CNI_NETNS="/var/run/netns/crs$TAG-$i" CNI_IFNAME=eth0 CNI_PATH=/x \
      CNI_ARGS="K8S_POD_UID=uid-rs$i;K8S_POD_NAMESPACE=rs;K8S_POD_NAME=p$i" "$COLO_BIN/colo-cni" >/dev/null
}
hello_ok() { ip netns exec "crs$TAG-$1" "$COLO_BIN/coloctl" hello --timeout-ms 1000 2>/dev/null | jq -e ".identity.name == \"p$1\"" >/dev/null; }
count_hello() {
  local ok=0 i
  for i in $(seq "$1" "$2"); do hello_ok "$i" && ok=$((ok + 1)); done
  echo "$ok"
}

for i in $(seq 1 $N); do make_netns "crs$TAG-$i"; add_pod "$i"; done
check "$N pods held" test "$(agent_get /debug/pods | jq '.pods | length')" -eq $N
check "every pod reaches its endpoint" test "$(count_hello 1 $N)" -eq $N

# Crash: no clean shutdown, then five pods go away while colo-node is down.
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=""
for i in 96 97 98 99 100; do ip netns del "crs$TAG-$i"; done
start_agent --hugepages-budget 32Mi
RESTORE=$(metric colo_restore_seconds)
echo "restore after crash: $RESTORE s for $N pods"
check "endpoints restored within $TIME_SCALE s for $N pods" awk -v t="$RESTORE" -v lim="$TIME_SCALE" 'BEGIN { exit !(t < lim) }'
check "every live pod reaches its endpoint again" test "$(count_hello 1 95)" -eq 95
check "pods whose netns vanished were released" test "$(agent_get /debug/pods | jq '.pods | length')" -eq 95
check "and counted" test "$(metric colo_pods_released_stale_total)" == 5
check "and their directories are gone" test ! -e "$WORK/run/pods/uid-rs100"
check "hugepage mounts survived the crash and were adopted" test "$(metric colo_hugepages_reserved_bytes)" == $((10 * 2097152))
check "still exactly ten hugepage mounts" test "$(grep -c "$WORK/run/pods/.*hugetlbfs" /proc/mounts)" -eq 10

# Clean restart.
stop_agent
start_agent --hugepages-budget 32Mi
check "after a clean restart every live pod reaches its endpoint" test "$(count_hello 1 95)" -eq 95

for i in $(seq 1 95); do
  env -i CNI_COMMAND=DEL CNI_CONTAINERID="rs$i" CNI_IFNAME=eth0 CNI_PATH=/x "$COLO_BIN/colo-cni" <<<"$CONF"
done
check "all released" test "$(agent_get /debug/pods | jq '.pods | length')" -eq 0
check "no hugepage mounts remain" test "$(grep -c "$WORK/run/pods/" /proc/mounts)" -eq 0

finish
