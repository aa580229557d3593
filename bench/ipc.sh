#!/usr/bin/env bash
# IPC benchmark, side by side in one run: 64 B and 64 KiB ping-pong round trips, 64 B streaming
# message rate and 64 KiB streaming throughput over TCP through veth + bridge, the spliced TCP path, the colo Unix pair, a
# colo shared-memory channel between two pods, and the same rings between two threads of one
# process (the monolith). Stream transports: both ends on CPU 0 (as sockperf); channels busy-poll,
# so their ends run on CPUs 0 and 1. Medians of RUNS runs.
export BUILD=${1:-build}
RUNS=${COLO_BENCH_RUNS:-5}
ITERS=${COLO_BENCH_ITERS:-20000}
# shellcheck source=node_lib.sh
source "$(dirname "$0")/node_lib.sh"
node_start 198.18.11.0/24
add_pod client true
add_pod server true
add_pod outsider false
PORT=7300
in_pod server "$BIN/colo-bench-ipc" serve bench "$PORT" >"$WORK/ipc-server.log" 2>&1 &
for _ in $(seq 1 100); do grep -q serving "$WORK/ipc-server.log" && break; sleep 0.02; done
TCP_TARGET=${IP[server]}:$PORT

# measure KIND ARGS...: one figure (or two) from the client pod, or from the outsider for plain TCP.
run() {
  local kind=$1
  shift
  case $kind in
    tcp) in_pod outsider "$BIN/colo-bench-ipc" "$@" --to "$TCP_TARGET" --via tcp-direct ;;
    spliced) in_pod client "$BIN/colo-bench-ipc" "$@" --to "$TCP_TARGET" --via tcp ;;
    unix) in_pod client "$BIN/colo-bench-ipc" "$@" --to bench --via unix ;;
    channel) in_pod client "$BIN/colo-bench-ipc" "$@" --to bench --via channel ;;
    channel_copy) in_pod client "$BIN/colo-bench-ipc" "$@" --to bench --via channel --copy all ;;
    local) "$BIN/colo-bench-ipc" local "$@" ;;
    local_copy) "$BIN/colo-bench-ipc" local "$@" --copy all ;;
  esac
}
KINDS=(tcp spliced unix channel channel_copy local local_copy)
: >"$WORK/r"
for run in $(seq 1 "$RUNS"); do
  echo "run $run/$RUNS" >&2
  for k in "${KINDS[@]}"; do
    echo "$k ping64 $(run "$k" ping --size 64 --iters "$ITERS")" >>"$WORK/r"
    echo "$k ping64k $(run "$k" ping --size 65536 --iters $((ITERS / 4)))" >>"$WORK/r"
    # In place, a stream writes nothing: only the copying variants have a meaningful stream figure.
    [[ $k == channel || $k == local ]] && continue
    echo "$k stream64k $(run "$k" stream --size 65536 --seconds 1)" >>"$WORK/r"
    echo "$k stream64 $(run "$k" stream --size 64 --seconds 1)" >>"$WORK/r"
  done
done
col() { awk -v k="$1" -v t="$2" -v c="$3" '$1 == k && $2 == t {print $c}' "$WORK/r" | median; }
declare -A NAME=([tcp]="TCP, veth + bridge" [spliced]="TCP, spliced by colo" [unix]="colo Unix pair"
  [channel]="colo channel, in place" [channel_copy]="colo channel, bytes copied" [local]="same rings, one process (monolith)"
  [local_copy]="same rings, one process, bytes copied")
echo
echo "pod to pod IPC, medians of $RUNS runs; round trips in microseconds (p50 / p99)"
printf '%-38s %16s %16s %12s %14s %14s\n' "" "64 B RTT" "64 KiB RTT" "64 B RTT/s" "64 B msgs/s" "64 KiB stream"
for k in "${KINDS[@]}"; do
  p50=$(col "$k" ping64 3) p99=$(col "$k" ping64 4) k50=$(col "$k" ping64k 3) k99=$(col "$k" ping64k 4)
  st=$(col "$k" stream64k 3) mr=$(col "$k" stream64 4)
  printf '%-38s %7.2f / %6.2f %7.2f / %6.2f %8.0f k %12s %14s\n' "${NAME[$k]}" "$p50" "$p99" "$k50" "$k99" \
    "$(awk -v r="$p50" 'BEGIN {print 1000 / r}')" "$([[ -n $mr ]] && awk -v m="$mr" 'BEGIN {printf "%.0f k", m / 1000}' || echo -)" \
    "$([[ -n $st ]] && printf '%.2f Gb' "$st" || echo -)"
done
CH=$(col channel ping64 3) CH64K=$(col channel ping64k 3) LO=$(col local ping64 3) TCP=$(col tcp ping64 3) UX=$(col unix ping64 3)
TCPM=$(col tcp stream64 4) UXM=$(col unix stream64 4)
echo
echo "headline: channel between two pods / same rings in one process, 64 B round trip: $(ratio "$CH" "$LO") ($CH us vs $LO us)"
echo "targets: channel 64 B RTT p50 < 1 us -> $CH us; 64 KiB <= 2x 64 B -> $(ratio "$CH64K" "$CH")"
echo "         Unix pair message rate >= 2x TCP over veth -> streaming 64 B: $(ratio "$UXM" "$TCPM"); ping-pong round trips: $(ratio "$TCP" "$UX")"
jq -n --argjson ch "$CH" --argjson ch64k "$CH64K" --argjson lo "$LO" --argjson tcp "$TCP" --argjson ux "$UX" --argjson runs "$RUNS" \
  --argjson tcpm "$TCPM" --argjson uxm "$UXM" \
  '{runs: $runs, rttP50us: {channel64: $ch, channel64k: $ch64k, inProcess64: $lo, tcpVeth64: $tcp, unix64: $ux},
    stream64MessagesPerSecond: {tcpVeth: $tcpm, unix: $uxm},
    channelVsMonolith: ($ch / $lo), unixPingPongRateVsTcp: ($tcp / $ux), unixStreamRateVsTcp: ($uxm / $tcpm)}' >"$OUT/ipc.json"
