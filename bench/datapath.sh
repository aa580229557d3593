#!/usr/bin/env bash
# Datapath benchmark, side by side in one run: iperf3 single-stream throughput and sockperf 64-byte
# ping-pong latency between two pods over veth and a bridge, without colo (pods not opted in) and
# with colo (opted in, spliced), with loopback and a plain Unix socket as references. Medians of
# RUNS runs, interleaved; latency endpoints pinned to CPU 0. Private cgroup and pin directory;
# addresses from 198.18.0.0/15; everything removed at exit.
export BUILD=${1:-build}
RUNS=${COLO_BENCH_RUNS:-9}  # the plain path swings 10-17 Gbit/s on this VM; 9 steadies the median
SECS=${COLO_BENCH_SECONDS:-2}
# shellcheck source=node_lib.sh
source "$(dirname "$0")/node_lib.sh"
node_start 198.18.8.0/24
for p in a b c d; do
  enabled=false
  [[ $p == a || $p == b ]] && enabled=true
  add_pod "$p" "$enabled"
done

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
r() { ratio "$@"; }

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
