#!/usr/bin/env bash
# Client languages side by side in one run: 64 B round trips over a colo Unix pair and a colo
# channel between two pods, from the C++ (libcolo), Go and Python clients, all against the same
# C++ server (colo-bench-ipc serve), and the same rings between two threads of one process in C++
# and Go. Clients run on CPU 0, the server's channel thread on CPU 1 (as bench/ipc.sh). Medians
# of RUNS runs. Target: the Go channel within 1.5x of C++'s 64 B round trip.
export BUILD=${1:-build}
RUNS=${COLO_BENCH_RUNS:-5}
ITERS=${COLO_BENCH_ITERS:-20000}
PY_ITERS=${COLO_BENCH_PY_ITERS:-5000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=node_lib.sh
source "$(dirname "$0")/node_lib.sh"
bash "$ROOT/scripts/go.sh" build "$BIN/colo-bench-go-ipc" "$ROOT/bench/clients/go-ipc"
node_start 198.18.13.0/24
add_pod client true
add_pod server true
in_pod server "$BIN/colo-bench-ipc" serve bench 7400 >"$WORK/clients-server.log" 2>&1 &
for _ in $(seq 1 100); do grep -q serving "$WORK/clients-server.log" && break; sleep 0.02; done

run() {  # run LANG VIA: "p50 p99" of 64 B round trips
  local lang=$1 via=$2
  case $lang/$via in
    cpp/local) "$BIN/colo-bench-ipc" local ping --size 64 --iters "$ITERS" ;;
    go/local) "$BIN/colo-bench-go-ipc" local --size 64 --iters "$ITERS" ;;
    cpp/*) in_pod client "$BIN/colo-bench-ipc" ping --to bench --via "$via" --size 64 --iters "$ITERS" ;;
    go/*) in_pod client "$BIN/colo-bench-go-ipc" --to bench --via "$via" --size 64 --iters "$ITERS" ;;
    py/*) in_pod client /usr/bin/python3 "$ROOT/bench/clients/ipc.py" --to bench --via "$via" --size 64 --iters "$PY_ITERS" ;;
  esac
}
CASES=(cpp/unix go/unix py/unix cpp/channel go/channel py/channel cpp/local go/local)
: >"$WORK/r"
for r in $(seq 1 "$RUNS"); do
  echo "run $r/$RUNS (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  for c in "${CASES[@]}"; do echo "$c $(run "${c%/*}" "${c#*/}")" >>"$WORK/r"; done
done
col() { awk -v k="$1" -v c="$2" '$1 == k {print $c}' "$WORK/r" | median; }
declare -A NAME=([unix]="colo Unix pair, pod to pod" [channel]="colo channel, pod to pod, in place" [local]="same rings, one process (threads)")
echo
echo "64 B round trips by client language, medians of $RUNS runs, microseconds (p50 / p99)"
printf '%-38s %16s %16s %16s\n' "" "C++ (libcolo)" "Go" "Python"
for via in unix channel local; do
  row=()
  for lang in cpp go py; do
    p50=$(col "$lang/$via" 2)
    if [[ -n $p50 ]]; then row+=("$(printf '%7.2f / %6.2f' "$p50" "$(col "$lang/$via" 3)")"); else row+=("-"); fi
  done
  printf '%-38s %16s %16s %16s\n' "${NAME[$via]}" "${row[@]}"
done
CC=$(col cpp/channel 2) GC=$(col go/channel 2) PC=$(col py/channel 2) CU=$(col cpp/unix 2) GU=$(col go/unix 2) PU=$(col py/unix 2)
CL=$(col cpp/local 2) GL=$(col go/local 2)
CC9=$(col cpp/channel 3) GC9=$(col go/channel 3) PC9=$(col py/channel 3) CU9=$(col cpp/unix 3) GU9=$(col go/unix 3) PU9=$(col py/unix 3)
CL9=$(col cpp/local 3) GL9=$(col go/local 3)
echo
echo "target: Go channel 64 B RTT within 1.5x of C++ -> $(ratio "$GC" "$CC") ($GC us vs $CC us)"
echo "        Go Unix pair vs C++: $(ratio "$GU" "$CU"); Python channel vs C++: $(ratio "$PC" "$CC"); Python Unix pair vs C++: $(ratio "$PU" "$CU")"
jq -n --argjson runs "$RUNS" --argjson cc "$CC" --argjson gc "$GC" --argjson pc "$PC" --argjson cu "$CU" --argjson gu "$GU" \
  --argjson pu "$PU" --argjson cl "$CL" --argjson gl "$GL" \
  --argjson cc9 "$CC9" --argjson gc9 "$GC9" --argjson pc9 "$PC9" --argjson cu9 "$CU9" --argjson gu9 "$GU9" --argjson pu9 "$PU9" \
  --argjson cl9 "$CL9" --argjson gl9 "$GL9" \
  '{runs: $runs, rttP50us: {channel: {cpp: $cc, go: $gc, python: $pc}, unix: {cpp: $cu, go: $gu, python: $pu},
    inProcess: {cpp: $cl, go: $gl}}, rttP99us: {channel: {cpp: $cc9, go: $gc9, python: $pc9}, unix: {cpp: $cu9, go: $gu9, python: $pu9},
    inProcess: {cpp: $cl9, go: $gl9}}, goChannelVsCpp: ($gc / $cc), goUnixVsCpp: ($gu / $cu)}' >"$OUT/clients.json"
echo "results: $OUT/clients.json"
