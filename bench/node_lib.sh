#!/usr/bin/env bash
# Shared by the benchmarks: a private simulated node. A cgroup of our own (this shell moves into
# it, so every process started here is inside), colo-node with the splice forced on (per-pod
# `auto` would not do: iperf3 does blocking reads, and the guard would withdraw its pods) and its maps
# pinned in a private directory, pods as network namespaces on a bridge (198.18.0.0/15), all
# removed at exit.
set -euo pipefail
BUILD=${BUILD:-build}
BIN=$(cd "$BUILD/bin" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$BUILD/bench
[[ $(id -u) -eq 0 ]] || { echo "bench: needs root" >&2; exit 1; }
mkdir -p "$OUT"

WORK=$(mktemp -d /tmp/colo-bench-node.XXXXXX)
TAG=$$
CG_ROOT=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
CG=$CG_ROOT/colo-bench-$TAG
PIN=/sys/fs/bpf/colo-bench-$TAG
BR=cbn$TAG
BR=${BR:0:15}
AGENT=""
PODS=()
declare -A IP

node_cleanup() {
  set +e
  echo $$ >"$CG_ROOT/cgroup.procs"
  [[ -n $AGENT ]] && kill -TERM "$AGENT" && wait "$AGENT"
  AGENT=""
  for _ in 1 2 3; do  # whatever is left in our cgroup (servers) goes, so the cgroup can be removed
    xargs -r kill -KILL <"$CG/cgroup.procs" 2>/dev/null
    [[ -s $CG/cgroup.procs ]] || break
    sleep 0.1
  done
  for p in "${PODS[@]}"; do ip netns del "cbn$TAG-$p" 2>/dev/null; done
  ip link del "$BR" 2>/dev/null
  "$BIN/colo-node" uninstall --bpf-pin-dir "$PIN" >/dev/null
  rmdir "$CG"
  rm -rf "$WORK"
}
trap node_cleanup EXIT

# node_start SUBNET [colo-node flags...]: cgroup, bridge and colo-node (datapath on).
node_start() {
  local subnet=$1
  shift
  mkdir "$CG"
  echo $$ >"$CG/cgroup.procs"
  ip link add "$BR" type bridge && ip link set "$BR" address 02:c0:10:bb:00:01 && ip link set "$BR" up
  "$BIN/colo-node" --run-dir "$WORK/run" --cni-socket "$WORK/run/cni/cni.sock" --state-dir "$WORK/state" --http-address "" \
    --datapath on --cgroup-path "$CG" --bpf-pin-dir "$PIN" "$@" >"$WORK/agent.log" 2>&1 &
  AGENT=$!
  for _ in $(seq 1 200); do grep -q "ready on node" "$WORK/agent.log" && break; sleep 0.05; done
  grep -o 'datapath: on.*' "$WORK/agent.log" | sed 's/^/colo-node: /'
  sed -e "s#@NETWORK@#colo-bench#; s#@BRIDGE@#$BR#; s#@SUBNET@#$subnet#; s#@IPAM_DIR@#$WORK/ipam#" \
      -e "s#@SOCKET@#$WORK/run/cni/cni.sock#; s#@POLICY@#closed#; s#@ENABLE_ALL@#false#; s#@LOG@#$WORK/colo-cni.log#" \
      "$HERE/../test/fixtures/bridge-colo.conflist.in" >"$WORK/net.conflist"
}

# add_pod NAME true|false: a pod on the bridge, opted in or not; its address lands in IP[NAME].
add_pod() {
  local p=$1 enabled=$2
  ip netns add "cbn$TAG-$p"
  PODS+=("$p")
  ip -n "cbn$TAG-$p" link set lo up
  IP[$p]=$("$BIN/colo-chain" ADD --conflist "$WORK/net.conflist" --id "bn$p" --netns "/var/run/netns/cbn$TAG-$p" \
    --cni-path "$BIN:/usr/lib/cni" --cache "$WORK/cache" --args "IgnoreUnknown=1;K8S_POD_UID=uid-bn$p;K8S_POD_NAMESPACE=bench" \
    --annotations "{\"colo.dev/enabled\":\"$enabled\"}" | tee -a "$WORK/add.log" | jq -r '.ips[0].address' | cut -d/ -f1 || true)
  [[ ${IP[$p]} != null && -n ${IP[$p]} ]] || { echo "ADD of pod $p failed: $(tail -n1 "$WORK/add.log")" >&2; exit 1; }
}

in_pod() { local p=$1; shift; ip netns exec "cbn$TAG-$p" "$@"; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
