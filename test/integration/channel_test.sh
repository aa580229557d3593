#!/usr/bin/env bash
# Shared-memory channels between pods: memory from the dialer's hugepages (or memfd, said so),
# many echoes, a peer that crashes on either side, and a pod that goes away.
source "$(dirname "$0")/lib.sh"

reserve_hugepages 8
start_agent --hugepages-budget 16Mi
CONF='{"cniVersion":"1.1.0","name":"colo-ch","type":"colo-cni","agentSocket":"'$WORK/run/cni/cni.sock'","failurePolicy":"closed","logFile":"'$WORK/colo-cni.log'","prevResult":{"cniVersion":"1.1.0","ips":[{"address":"198.18.10.1/24"}]}}'
add_pod() {  # add_pod NAME ANNOTATIONS_JSON
  make_netns "cch$TAG-$1"
  jq -c --argjson ann "$2" '.runtimeConfig={"io.kubernetes.cri.pod-annotations":$ann}' <<<"$CONF" |
    env -i CNI_COMMAND=ADD CNI_CONTAINERID="ch$1" CNI_NETNS="/var/run/netns/cch$TAG-$1" CNI_IFNAME=eth0 CNI_PATH=/x \
      CNI_ARGS="K8S_POD_UID=uid-ch$1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$1" "$COLO_BIN/colo-cni" >/dev/null
}
del_pod() {
  env -i CNI_COMMAND=DEL CNI_CONTAINERID="ch$1" CNI_IFNAME=eth0 CNI_PATH=/x "$COLO_BIN/colo-cni" <<<"$CONF"
}
add_pod srv '{"colo.dev/enabled":"true"}'
add_pod plain '{"colo.dev/enabled":"true"}'
add_pod huge '{"colo.dev/enabled":"true","colo.dev/hugepages":"8Mi"}'
PIDS=()
kill_all() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; }
on_exit kill_all
serve() {  # serve NAME [--stall]
  ip netns exec "cch$TAG-srv" "$COLO_BIN/echo_server" "$@" >>"$WORK/server.log" 2>&1 &
  PIDS+=($!)
  SERVER=$!
  for _ in $(seq 1 100); do grep -q "listening on colo name $1" "$WORK/server.log" && return 0; sleep 0.02; done
  return 1
}
client() { local pod=$1; shift; ip netns exec "cch$TAG-$pod" "$COLO_BIN/echo_client" "$@" 2>&1; }

serve echo
OUT=$(client plain echo --count 10000)
check "a pod without hugepages gets a channel in ordinary memory, and says so" grep -q "then channel (memory memfd)" <<<"$OUT"
check "10000 echoes over the channel" grep -q "echo ok: .* (x10000)" <<<"$OUT"
check "colo-node logged why it used ordinary memory" grep -q "channel for pod uid-chplain: the pod has no hugepages" "$WORK/agent.log"
OUT=$(client huge echo --count 1000 --channel-bytes 4194304 "$(head -c 30000 /dev/zero | tr '\0' x)")
check "a dialer with hugepages gets its channel from them" grep -q "then channel (memory hugepages)" <<<"$OUT"
check "30 KB messages echo intact" grep -q "(x1000)" <<<"$OUT"
check "the listener maps the same hugepage-backed memory" grep -q "channel from default/huge (memory hugepages)" "$WORK/server.log"
check "channels are counted by memory kind" \
  test "$(metric 'colo_broker_channels_total{memory="hugepages"}'),$(metric 'colo_broker_channels_total{memory="memfd"}')" == "1,1"
check "the hugepage file is not left in the pod's mount" test -z "$(ls -A "$WORK/run/pods/uid-chhuge/hugepages")"

# --- a peer that crashes ---
serve stall --stall
client plain stall --count 2 >"$WORK/stalled.log" 2>&1 &
STALLED=$!
PIDS+=("$STALLED")
for _ in $(seq 1 100); do grep -q "channel from default/plain" "$WORK/server.log" && break; sleep 0.02; done
sleep 0.1
kill -KILL "$SERVER"
START=$(date +%s%N)
wait "$STALLED" && RC=0 || RC=$?
ELAPSED_MS=$((($(date +%s%N) - START) / 1000000))
check "when the server dies, the waiting client gets an error, not a hang" test "$RC" -ne 0
check "and learns that the peer went away" grep -q "the peer went away" "$WORK/stalled.log"
check "within a second ($ELAPSED_MS ms)" test "$ELAPSED_MS" -lt 1000
serve echo2
client plain echo2 --count 100000000 >/dev/null 2>&1 &
CLIENT=$!
PIDS+=("$CLIENT")
sleep 0.5
kill -KILL "$CLIENT"
for _ in $(seq 1 100); do grep -q "channel from default/plain ended after" "$WORK/server.log" && break; sleep 0.02; done
check "when the client dies mid-stream, the server notices and carries on" grep -q "channel from default/plain ended after [0-9]* messages: the peer went away" "$WORK/server.log"
check "and still serves others" grep -q "echo ok" <<<"$(client plain echo2)"

# --- a pod that goes away releases its names and hugepages ---
client huge echo --count 1 --channel-bytes 4194304 >/dev/null
check "pod huge holds its hugepage reservation" test "$(metric colo_hugepages_reserved_bytes)" == 8388608
del_pod huge
check "after its DEL the reservation is released" test "$(metric colo_hugepages_reserved_bytes)" == 0
check "and its mount is gone" bash -c "! grep -q uid-chhuge /proc/mounts"
del_pod srv
check "the server pod's names are gone with it" grep -q "not found" <<<"$(client plain echo || true)"

finish
