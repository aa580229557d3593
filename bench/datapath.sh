#!/usr/bin/env bash
# Datapath benchmark, side by side in one run: iperf3 single-stream throughput and sockperf 64-byte
# ping-pong latency between two pods over veth and a bridge, without colo (pods not opted in) and
# with colo (opted in, spliced), with loopback and a plain Unix socket as references. Medians of
# RUNS runs, interleaved; latency endpoints pinned to CPU 0. Private cgroup and pin directory;
# addresses from 198.18.0.0/15; everything removed at exit.
set -euo pipefail
BUILD=${1:-build}
BIN=$(cd "$BUILD/bin" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$BUILD/bench
RUNS=${COLO_BENCH_RUNS:-5}
SECS=${COLO_BENCH_SECONDS:-2}
[[ $(id -u) -eq 0 ]] || { echo "bench: needs root" >&2; exit 1; }
mkdir -p "$OUT"

WORK=$(mktemp -d /tmp/colo-bench-dp.XXXXXX)
TAG=$$
CG_ROOT=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
CG=$CG_ROOT/colo-bench-$TAG
PIN=/sys/fs/bpf/colo-bench-$TAG
BR=cbd$TAG
BR=${BR:0:15}
AGENT=""
cleanup() {
  set +e
  echo $$ >"$CG_ROOT/cgroup.procs"
  [[ -n $AGENT ]] && kill -TERM "$AGENT" && wait "$AGENT"
  AGENT=""
  # Whatever is still in the bench cgroup (servers) goes, so the cgroup can be removed.
  for _ in 1 2 3; do
    xargs -r kill -KILL <"$CG/cgroup.procs" 2>/dev/null
    [[ -s $CG/cgroup.procs ]] || break
    sleep 0.1
  done
  [[ -n $AGENT ]] && kill -TERM "$AGENT" && wait "$AGENT"
  for p in a b c d; do ip netns del "cbd$TAG-$p" 2>/dev/null; done
  ip link del "$BR" 2>/dev/null
  "$BIN/colo-node" uninstall --bpf-pin-dir "$PIN" >/dev/null
  rmdir "$CG"
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir "$CG"
echo $$ >"$CG/cgroup.procs"

ip link add "$BR" type bridge && ip link set "$BR" address 02:c0:10:bd:00:01 && ip link set "$BR" up
"$BIN/colo-node" --run-dir "$WORK/run" --cni-socket "$WORK/run/cni/cni.sock" --state-dir "$WORK/state" --http-address "" \
  --datapath on --cgroup-path "$CG" --bpf-pin-dir "$PIN" >"$WORK/agent.log" 2>&1 &
AGENT=$!
for _ in $(seq 1 200); do grep -q "ready on node" "$WORK/agent.log" && break; sleep 0.05; done
grep -o 'datapath: on.*' "$WORK/agent.log" | sed 's/^/colo-node: /'

sed -e "s#@NETWORK@#colo-bench-dp#; s#@BRIDGE@#$BR#; s#@SUBNET@#198.18.8.0/24#; s#@IPAM_DIR@#$WORK/ipam#" \
    -e "s#@SOCKET@#$WORK/run/cni/cni.sock#; s#@POLICY@#closed#; s#@ENABLE_ALL@#false#; s#@LOG@#$WORK/colo-cni.log#" \
    "$HERE/../test/fixtures/bridge-colo.conflist.in" >"$WORK/net.conflist"
declare -A IP
for p in a b c d; do
  ip netns add "cbd$TAG-$p"
  ip -n "cbd$TAG-$p" link set lo up
  enabled=false
  [[ $p == a || $p == b ]] && enabled=true
  IP[$p]=$("$BIN/colo-chain" ADD --conflist "$WORK/net.conflist" --id "bd$p" --netns "/var/run/netns/cbd$TAG-$p" \
    --cni-path "$BIN:/usr/lib/cni" --cache "$WORK/cache" --args "IgnoreUnknown=1;K8S_POD_UID=uid-bd$p" \
    --annotations "{\"colo.dev/enabled\":\"$enabled\"}" | tee -a "$WORK/add.log" | jq -r '.ips[0].address' | cut -d/ -f1 || true)
  [[ ${IP[$p]} != null ]] || { echo "ADD of pod $p failed: $(tail -n1 "$WORK/add.log")" >&2; exit 1; }
done
in_pod() { local p=$1; shift; ip netns exec "cbd$TAG-$p" "$@"; }

# iperf3_run FROM_POD TO_POD TO_IP -> Gbit/s
iperf3_run() {
  in_pod "$2" timeout 30 iperf3 -s -1 -B "$3" -p 5201 >/dev/null 2>&1 &
  local srv=$!
  sleep 0.2
  in_pod "$1" timeout 30 iperf3 -c "$3" -p 5201 -t "$SECS" -J | jq '.end.sum_received.bits_per_second / 1e9'
  wait "$srv" || true
}
# sockperf_run FROM_POD TO_POD TO_IP -> "p50 p99" one-way microseconds, both ends on CPU 0
sockperf_run() {
  in_pod "$2" taskset -c 0 timeout 30 sockperf server --tcp -i "$3" -p 11111 >/dev/null 2>&1 &
  local srv=$!
  sleep 0.3
  in_pod "$1" taskset -c 0 timeout 30 sockperf ping-pong --tcp -i "$3" -p 11111 -m 64 -t "$SECS" 2>&1 |
    awk '/percentile 50.000/ {p50=$NF} /percentile 99.000/ {p99=$NF} END {print p50, p99}'
  pkill -f "sockperf server --tcp -i $3 -p 11111"
  wait "$srv" 2>/dev/null || true
}
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

: >"$WORK/r"
for run in $(seq 1 "$RUNS"); do
  echo "run $run/$RUNS" >&2
  echo "tput_plain $(iperf3_run c d "${IP[d]}")" >>"$WORK/r"
  echo "tput_colo $(iperf3_run a b "${IP[b]}")" >>"$WORK/r"
  echo "tput_lo $(iperf3_run a a 127.0.0.1)" >>"$WORK/r"
  echo "tput_unix $("$BIN/colo-bench-unix" stream "$SECS")" >>"$WORK/r"
  read -r p50 p99 < <(sockperf_run c d "${IP[d]}"); echo "lat_plain $p50 $p99" >>"$WORK/r"
  read -r p50 p99 < <(sockperf_run a b "${IP[b]}"); echo "lat_colo $p50 $p99" >>"$WORK/r"
  read -r p50 p99 < <(sockperf_run a a 127.0.0.1); echo "lat_lo $p50 $p99" >>"$WORK/r"
  read -r p50 p99 < <(taskset -c 0 "$BIN/colo-bench-unix" pingpong 200000); echo "lat_unix $p50 $p99" >>"$WORK/r"
done
col() { awk -v k="$1" -v c="$2" '$1 == k {print $c}' "$WORK/r" | median; }
TP=$(col tput_plain 2) TC=$(col tput_colo 2) TL=$(col tput_lo 2) TU=$(col tput_unix 2)
LP=$(col lat_plain 2) LC=$(col lat_colo 2) LL=$(col lat_lo 2) LU=$(col lat_unix 2)
LP99=$(col lat_plain 3) LC99=$(col lat_colo 3) LL99=$(col lat_lo 3) LU99=$(col lat_unix 3)
SPLICED=$(bpftool -j map dump pinned "$PIN/colo_stats" | jq '[.[].formatted | select(.key == 0) | .values[].value] | add // 0')
r() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }

echo
echo "pod to pod over veth + bridge, medians of $RUNS runs of ${SECS}s (sockets spliced by colo during the run: $SPLICED)"
printf '%-34s %12s %10s %12s %12s %10s\n' "" "throughput" "vs plain" "p50 one-way" "p99 one-way" "vs plain"
printf '%-34s %9.2f Gb %10s %9.2f us %9.2f us %10s\n' "veth + bridge, without colo" "$TP" "1.00x" "$LP" "$LP99" "1.00x"
printf '%-34s %9.2f Gb %10s %9.2f us %9.2f us %10s\n' "veth + bridge, with colo (spliced)" "$TC" "$(r "$TC" "$TP")" "$LC" "$LC99" "$(r "$LC" "$LP")"
printf '%-34s %9.2f Gb %10s %9.2f us %9.2f us %10s\n' "loopback (reference)" "$TL" "$(r "$TL" "$TP")" "$LL" "$LL99" "$(r "$LL" "$LP")"
printf '%-34s %9.2f Gb %10s %9.2f us %9.2f us %10s\n' "Unix socket (reference)" "$TU" "$(r "$TU" "$TP")" "$LU" "$LU99" "$(r "$LU" "$LP")"
echo "targets: throughput >= 2.50x -> $(r "$TC" "$TP"); p50 latency <= 0.60x -> $(r "$LC" "$LP")"
echo "colo vs Unix socket: throughput $(r "$TC" "$TU"), p50 latency $(r "$LC" "$LU")"
jq -n --argjson tp "$TP" --argjson tc "$TC" --argjson tl "$TL" --argjson tu "$TU" --argjson lp "$LP" --argjson lc "$LC" \
  --argjson ll "$LL" --argjson lu "$LU" --argjson runs "$RUNS" \
  '{runs: $runs, gbps: {plain: $tp, colo: $tc, loopback: $tl, unix: $tu}, p50us: {plain: $lp, colo: $lc, loopback: $ll, unix: $lu},
    throughputRatio: ($tc / $tp), latencyRatio: ($lc / $lp)}' >"$OUT/datapath.json"
