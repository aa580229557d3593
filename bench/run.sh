#!/usr/bin/env bash
# make bench: runs colo's benchmarks on a private simulated node and prints their tables.
# Addresses from 198.18.0.0/15 only; every namespace, link and daemon is removed at exit.
set -euo pipefail
BUILD=${1:-build}
BIN=$(cd "$BUILD/bin" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
PODS=${COLO_BENCH_PODS:-200}
[[ $(id -u) -eq 0 ]] || { echo "bench: needs root" >&2; exit 1; }
# The report's picture needs matplotlib, from Debian.
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || { echo "bench: installing python3-matplotlib"; apt-get install -y -q python3-matplotlib >/dev/null; }

WORK=$(mktemp -d /tmp/colo-bench.XXXXXX)
OUT=$BUILD/bench
mkdir -p "$OUT"
BR=cbench$$
BR=${BR:0:15}
NS_COUNT=16
AGENT=""
EP_PODS=100
cleanup() {
  set +e
  [[ -n $AGENT ]] && kill -TERM "$AGENT" && wait "$AGENT"
  for i in $(seq 0 $((NS_COUNT - 1))); do ip netns del "cbn$$-$i" 2>/dev/null; done
  for i in $(seq 0 $((EP_PODS - 1))); do ip netns del "cbe$$-$i" 2>/dev/null; done
  ip link del "$BR" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

ip link add "$BR" type bridge && ip link set "$BR" address 02:c0:10:be:00:01 && ip link set "$BR" up
for i in $(seq 0 $((NS_COUNT - 1))); do ip netns add "cbn$$-$i"; done

start_agent() {
  "$BIN/colo-node" --run-dir "$WORK/run" --cni-socket "$WORK/run/cni/cni.sock" --state-dir "$WORK/state" \
    --http-address "" --log-level info --datapath off >>"$WORK/agent.log" 2>&1 &
  AGENT=$!
}
start_agent
for _ in $(seq 1 100); do [[ -S $WORK/run/cni/cni.sock ]] && break; sleep 0.05; done

sed -e "s#@NETWORK@#colo-bench#; s#@BRIDGE@#$BR#; s#@SUBNET@#198.18.200.0/24#; s#@IPAM_DIR@#$WORK/ipam#" \
    -e "s#@SOCKET@#$WORK/run/cni/cni.sock#; s#@POLICY@#closed#; s#@ENABLE_ALL@#false#; s#@LOG@#$WORK/colo-cni.log#" \
    -e 's#"logLevel": "debug"#"logLevel": "info"#' \
    "$HERE/../test/fixtures/bridge-colo.conflist.in" >"$WORK/colo.conflist"
jq '.plugins |= [.[0]]' "$WORK/colo.conflist" >"$WORK/base.conflist"

echo "== CNI chain overhead: bridge + host-local, without and with colo-cni ($PODS pods)"
"$BIN/colo-bench-cni" --base "$WORK/base.conflist" --colo "$WORK/colo.conflist" --netns-prefix "cbn$$-" \
  --netns-count "$NS_COUNT" --pods "$PODS" --cni-path "$BIN:/usr/lib/cni" --json "$OUT/cni_overhead.json"
echo "results: $OUT/cni_overhead.json"

echo
echo "== Pod endpoints: ADD to a connectable @colo, and restart recovery ($EP_PODS pods)"
for i in $(seq 0 $((EP_PODS - 1))); do ip netns add "cbe$$-$i"; done
"$BIN/colo-bench-endpoint" add --pods "$EP_PODS" --netns-prefix "cbe$$-" --colo-cni "$BIN/colo-cni" \
  --socket "$WORK/run/cni/cni.sock" --json "$OUT/endpoint_add.json"
kill -TERM "$AGENT" && wait "$AGENT" || true
start_agent
"$BIN/colo-bench-endpoint" probe --pods "$EP_PODS" --netns-prefix "cbe$$-" --json "$OUT/endpoint_restart.json"
grep -o 'endpoints back in .*' "$WORK/agent.log" | tail -n1 | sed 's/^/colo-node says: /'

echo
echo "== Datapath: iperf3 and sockperf between two pods, without and with colo"
bash "$HERE/datapath.sh" "$BUILD"

echo
echo "== Service ClusterIP: iperf3 and sockperf to a Service between two pods, without colo (kube-proxy DNAT) and with colo"
bash "$HERE/service.sh" "$BUILD"

echo
echo "== IPC: TCP, spliced TCP, Unix pair, shared-memory channel and the in-process rings"
bash "$HERE/ipc.sh" "$BUILD"

echo
echo "== Kubernetes: 5000 pods in the cluster, 100 on this node; watch event to applied, and RSS"
bash "$HERE/kube.sh" "$BUILD"

echo
echo "== Clients: 64 B round trips from the C++, Go and Python clients (Unix pair, channel)"
bash "$HERE/clients.sh" "$BUILD"

echo
echo "== Report: docs/benchmarks.md tables and docs/benchmarks-transports.png from $OUT/*.json"
/usr/bin/python3 "$HERE/report.py" --results "$OUT" --doc "$HERE/../docs/benchmarks.md" --png "$HERE/../docs/benchmarks-transports.png"
