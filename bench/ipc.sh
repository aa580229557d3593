#!/usr/bin/env bash
# IPC benchmark, side by side in one run, written to $OUT/ipc.json (bench/report.py makes the
# tables, docs/benchmarks.md and the picture from it):
#  1. the hardware floor (two threads handing one cache line back and forth) against the 64 B
#     channel round trip between two pods, interleaved round by round on CPUs 0 and 1 (FLOOR_RUNS
#     runs of ROUNDS rounds; the ratio is taken per round, then its median);
#  2. the same against the in-process rings (two threads of one process);
#  3. 64 B and 64 KiB ping-pong round trips, 64 B streaming message rate and 64 KiB streaming
#     throughput over TCP through veth + bridge, the spliced TCP path, the colo Unix pair, the
#     channel and the in-process rings (RUNS runs). Stream transports: both ends on CPU 0 (as
#     sockperf); channels busy-poll, so their ends run on CPUs 0 and 1.
export BUILD=${1:-build}
RUNS=${COLO_BENCH_RUNS:-5}
ITERS=${COLO_BENCH_ITERS:-20000}
FLOOR_RUNS=${COLO_BENCH_FLOOR_RUNS:-3}
ROUNDS=${COLO_BENCH_FLOOR_ROUNDS:-21}
# shellcheck source=node_lib.sh
source "$(dirname "$0")/node_lib.sh"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
node_start 198.18.11.0/24
add_pod client true
add_pod server true
add_pod outsider false
PORT=7300
in_pod server "$BIN/colo-bench-ipc" serve bench "$PORT" >"$WORK/ipc-server.log" 2>&1 &
for _ in $(seq 1 100); do grep -q serving "$WORK/ipc-server.log" && break; sleep 0.02; done
TCP_TARGET=${IP[server]}:$PORT

# run KIND ARGS...: one figure (or two) from the client pod, or from the outsider for plain TCP.
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

: >"$WORK/floor.jsonl"
for r in $(seq 1 "$FLOOR_RUNS"); do
  echo "step 1 of 3: floor vs channel between pods, run $r of $FLOOR_RUNS ($ROUNDS rounds)" >&2
  run channel floor --size 64 --iters "$ITERS" --rounds "$ROUNDS" | jq -c '. + {between: "pods"}' >>"$WORK/floor.jsonl"
done
for r in $(seq 1 "$FLOOR_RUNS"); do
  echo "step 2 of 3: floor vs the in-process rings, run $r of $FLOOR_RUNS ($ROUNDS rounds)" >&2
  run local floor --size 64 --iters "$ITERS" --rounds "$ROUNDS" | jq -c '. + {between: "threads"}' >>"$WORK/floor.jsonl"
done

KINDS=(tcp spliced unix channel channel_copy local local_copy)
: >"$WORK/samples.jsonl"
sample() {  # sample KIND MEASURE RUN OUTPUT...: one JSON line
  local kind=$1 measure=$2 r=$3 a=$4 b=$5
  case $measure in
    ping*) jq -nc --arg k "$kind" --arg m "$measure" --argjson r "$r" --arg a "$a" --arg b "$b" '{kind:$k, measure:$m, run:$r, p50:($a|tonumber), p99:($b|tonumber)}' ;;
    stream*) jq -nc --arg k "$kind" --arg m "$measure" --argjson r "$r" --arg a "$a" --arg b "$b" '{kind:$k, measure:$m, run:$r, gbps:($a|tonumber), messagesPerSecond:($b|tonumber)}' ;;
  esac >>"$WORK/samples.jsonl"
}
for r in $(seq 1 "$RUNS"); do
  for k in "${KINDS[@]}"; do
    echo "step 3 of 3: transports, run $r of $RUNS: $k" >&2
    # shellcheck disable=SC2046
    sample "$k" ping64 "$r" $(run "$k" ping --size 64 --iters "$ITERS")
    # shellcheck disable=SC2046
    sample "$k" ping64k "$r" $(run "$k" ping --size 65536 --iters $((ITERS / 4)))
    # In place, a stream writes nothing: only the copying variants have a meaningful stream figure.
    [[ $k == channel || $k == local ]] && continue
    # shellcheck disable=SC2046
    sample "$k" stream64k "$r" $(run "$k" stream --size 65536 --seconds 1)
    # shellcheck disable=SC2046
    sample "$k" stream64 "$r" $(run "$k" stream --size 64 --seconds 1)
  done
done
jq -n --arg date "$(date -u +%Y-%m-%dT%H:%MZ)" --arg cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
  --argjson cpus "$(nproc)" --arg kernel "$(uname -r)" --arg loadStart "$LOAD_START" --arg loadEnd "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --argjson runs "$RUNS" --argjson floorRuns "$FLOOR_RUNS" --argjson rounds "$ROUNDS" \
  --slurpfile floor "$WORK/floor.jsonl" --slurpfile samples "$WORK/samples.jsonl" \
  '{date:$date, machine:{cpu:$cpu, cpus:$cpus, kernel:$kernel}, loadavg:{start:$loadStart, end:$loadEnd},
    runs:$runs, floorRuns:$floorRuns, rounds:$rounds, floor:$floor, samples:$samples}' >"$OUT/ipc.json"
/usr/bin/python3 "$HERE/report.py" --results "$OUT" --print ipc
echo "results: $OUT/ipc.json"
