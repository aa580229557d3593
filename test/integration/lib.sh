#!/usr/bin/env bash
# Shared harness for colo's integration tests: real network namespaces, Debian's reference CNI
# plugins, the real colo-node and colo-cni. Addresses come from 198.18.0.0/15 only and no route
# leads out. Everything a test creates is removed on exit, pass or fail.
set -euo pipefail

[[ $(id -u) -eq 0 ]] || { echo "SKIP: integration tests need root" >&2; exit 77; }
COLO_BIN=${COLO_BIN:?set COLO_BIN to the build bin directory}
COLO_FIXTURES=${COLO_FIXTURES:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../fixtures" && pwd)}
REF_PLUGINS=${REF_PLUGINS:-/usr/lib/cni}
# Time limits in the tests hold for the main build. Under a sanitizer (sanitized.sh sets
# COLO_TIME_SCALE) colo runs several times slower, so limits meant to catch a stall are scaled.
export TIME_SCALE=${COLO_TIME_SCALE:-1}

WORK=$(mktemp -d /tmp/colo-it.XXXXXX)
chmod 755 "$WORK"  # like /run: non-root pod users must be able to traverse to their colo.sock
TAG=$$
NETNS_CREATED=()
LINKS_CREATED=()
AGENT_PID=""
PASSED=0
FAILED=0

HUGEPAGES_SAVED=""
# reserve_hugepages N: at least N 2 MiB pages for this test. The pool is shared with whatever else
# runs on the machine, so it is only ever raised, and put back at exit only if nobody changed it since.
reserve_hugepages() {
  local now
  now=$(cat /proc/sys/vm/nr_hugepages)
  ((now >= $1)) && return 0
  HUGEPAGES_SAVED=$now
  echo "$1" >/proc/sys/vm/nr_hugepages
  HUGEPAGES_SET=$(cat /proc/sys/vm/nr_hugepages)
}

EXIT_HOOKS=()
# on_exit FN: FN runs at exit, before the common teardown, whatever the outcome.
on_exit() { EXIT_HOOKS+=("$1"); }

cleanup() {
  local rc=$?
  for hook in "${EXIT_HOOKS[@]}"; do "$hook" || true; done
  stop_agent || true
  grep -o "${WORK}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  [[ -n $HUGEPAGES_SAVED && $(cat /proc/sys/vm/nr_hugepages) == "$HUGEPAGES_SET" ]] && echo "$HUGEPAGES_SAVED" >/proc/sys/vm/nr_hugepages
  for ns in "${NETNS_CREATED[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  for l in "${LINKS_CREATED[@]}"; do ip link del "$l" 2>/dev/null || true; done
  if [[ $rc -ne 0 || $FAILED -ne 0 ]] && [[ -f $WORK/agent.log ]]; then
    echo "--- colo-node log (last 40 lines) ---" >&2
    tail -n 40 "$WORK/agent.log" >&2 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# bpf_sandbox PREFIX: a cgroup of this test's own, which the test moves itself into (so colo-node's
# programs, attached there, see only this test's sockets), and a private pin directory: sets
# CG_ROOT, CG and PIN. At exit the test leaves the cgroup, the agent is stopped, whatever still runs
# in the cgroup (servers, clients) is killed, the pins are removed and the cgroup too.
bpf_sandbox() {
  CG_ROOT=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
  CG=$CG_ROOT/$1-$TAG
  PIN=/sys/fs/bpf/$1-$TAG
  mkdir "$CG"
  echo $$ >"$CG/cgroup.procs"
  on_exit bpf_sandbox_cleanup
}
bpf_sandbox_cleanup() {
  echo $$ >"$CG_ROOT/cgroup.procs" 2>/dev/null || true
  stop_agent || true
  for _ in 1 2 3; do
    xargs -r kill -KILL <"$CG/cgroup.procs" 2>/dev/null || true
    [[ -s $CG/cgroup.procs ]] || break
    sleep 0.1
  done
  "$COLO_BIN/colo-node" uninstall --bpf-pin-dir "$PIN" >/dev/null 2>&1 || true
  rmdir "$CG" 2>/dev/null || true
}

pass() { PASSED=$((PASSED + 1)); echo "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
# check "description" command...: passes when the command succeeds.
check() {
  local desc=$1
  shift
  if "$@"; then pass "$desc"; else fail "$desc"; fi
}
# fails command...: succeeds when the command fails (a shell function too, unlike bash -c "! ...").
fails() { ! "$@" >/dev/null 2>&1; }
finish() {
  echo "$PASSED passed, $FAILED failed"
  [[ $FAILED -eq 0 ]]
}

make_netns() {
  local name=$1
  ip netns add "$name"
  NETNS_CREATED+=("$name")
  ip -n "$name" link set lo up
}

track_link() { LINKS_CREATED+=("$1"); }

# make_bridge NAME: pre-created with a fixed MAC. Left to itself a Linux bridge takes the lowest
# port MAC, which changes as pods come and go, and the bridge plugin's CHECK then fails.
make_bridge() {
  ip link add "$1" type bridge
  track_link "$1"
  ip link set "$1" address 02:c0:10:00:00:01
  ip link set "$1" up
}

# How many times colo-node said it was ready in this test's log (0 before the log exists).
ready_count() {
  local n
  n=$(grep -c "ready on node" "$WORK/agent.log" 2>/dev/null)
  echo "${n:-0}"
}

# start_agent [extra flags...]: colo-node on this test's private paths; HTTP on a free port.
start_agent() {
  local before deadline=$((SECONDS + 20 * TIME_SCALE))
  before=$(ready_count)
  "$COLO_BIN/colo-node" --run-dir "$WORK/run" --cni-socket "$WORK/run/cni/cni.sock" --state-dir "$WORK/state" \
    --http-address 127.0.0.1:0 --log-level debug --node-name "it-$TAG" --datapath off --bpf-pin-dir "/sys/fs/bpf/colo-it-$TAG" "$@" >>"$WORK/agent.log" 2>&1 &
  AGENT_PID=$!
  # Bounded to catch a hang only: the start includes the datapath self-test, slow on a loaded machine.
  while (($(ready_count) <= before && SECONDS < deadline)); do
    kill -0 "$AGENT_PID" 2>/dev/null || { echo "colo-node exited at start" >&2; return 1; }
    sleep 0.025
  done
  (($(ready_count) > before)) || { echo "colo-node did not start" >&2; return 1; }
  AGENT_HTTP=$(grep -o 'http: serving .* on [0-9.:]*' "$WORK/agent.log" | tail -n1 | awk '{print $NF}')
}

stop_agent() {
  [[ -n $AGENT_PID ]] || return 0
  kill -TERM "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=""
}

agent_get() { curl -sf --max-time 2 "http://$AGENT_HTTP$1"; }
pod_keys() { agent_get /debug/pods | jq -r '.pods[].key' | sort | tr '\n' ' '; }
metric() { agent_get /metrics | awk -v m="$1" '$1 == m {print $2}' | head -n1; }

# write_conflist FILE NETWORK BRIDGE SUBNET[,SUBNET6] POLICY ENABLE_ALL
# Two subnets (198.18.x.0/24,2001:2:x::/64) make a dual-stack network: host-local gets one range
# set per family and each pod an address of each.
write_conflist() {
  sed -e "s#@NETWORK@#$2#; s#@BRIDGE@#$3#; s#@SUBNET@#${4%%,*}#; s#@IPAM_DIR@#$WORK/ipam#" \
      -e "s#@SOCKET@#$WORK/run/cni/cni.sock#; s#@POLICY@#$5#; s#@ENABLE_ALL@#$6#; s#@LOG@#$WORK/colo-cni.log#" \
      "$COLO_FIXTURES/bridge-colo.conflist.in" >"$1"
  if [[ $4 == *,* ]]; then
    jq --arg s "$4" '.plugins[0].ipam.ranges = [$s | split(",")[] | [{subnet: .}]]' "$1" >"$1.tmp"
    mv "$1.tmp" "$1"
  fi
}

# chain VERB CONFLIST ID NETNS [ANNOTATIONS_JSON] [extra colo-chain args...]
chain() {
  local verb=$1 conf=$2 id=$3 ns=$4 ann=${5:-}
  shift 4
  [[ $# -gt 0 ]] && shift
  local args=(--conflist "$conf" --id "$id" --netns "$ns" --cni-path "$COLO_BIN:$REF_PLUGINS" --cache "$WORK/cache"
    --args "K8S_POD_INFRA_CONTAINER_ID=$id;K8S_POD_UID=uid-$id;IgnoreUnknown=1;K8S_POD_NAMESPACE=${POD_NS:-default};K8S_POD_NAME=pod-$id")
  [[ -n $ann ]] && args+=(--annotations "$ann")
  "$COLO_BIN/colo-chain" "$verb" "${args[@]}" "$@"
}

# cni_direct VERB CONFIG_JSON [ENV...]: colo-cni alone, as a runtime would call it.
cni_direct() {
  local verb=$1 conf=$2
  shift 2
  env -i PATH=/usr/bin:/bin CNI_COMMAND="$verb" CNI_PATH="$COLO_BIN" "$@" "$COLO_BIN/colo-cni" <<<"$conf"
}
