#!/usr/bin/env bash
# A hostile peer on the other side of a shared-memory channel, against libcolo, Go and Python:
# memory it shrinks (was SIGBUS) or offers unsealed, sparse 2 GiB, empty or of a size other than
# offered; doorbells it makes blocking and full (was a commit blocked forever) or passes as an
# eventfd or a pipe; a ring it lies about; a peer that dies. Every case must end with a clean
# error or a normal run, never a crash or a hang. Then the two attacks that broke pods (truncate,
# bell-block) through the real colo-node, with libcolo as side 0.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
H=$ROOT/test/integration/hostile
BUILD=${BUILD:-$(dirname "$COLO_BIN")}
export BUILD COLO_PY=$ROOT/clients/python PYTHONDONTWRITEBYTECODE=1
bash "$ROOT/scripts/go.sh" build "$BUILD/bin/colo-test-channel-victim-go" "$H/victim_go"
VICTIMS=("$COLO_BIN/colo-test-channel-victim" "$BUILD/bin/colo-test-channel-victim-go" "/usr/bin/python3 $H/victim.py")
LANGS=(cpp go py)

attack() {  # attack NAME VICTIM-INDEX: runs it, output in $OUT (and attacks.log)
  # shellcheck disable=SC2086 # the Python victim is "python3 script"
  OUT=$(WAIT=20 timeout 60 /usr/bin/python3 "$H/hostile_peer.py" "$1" ${VICTIMS[$2]} 2>&1)
  printf '=== %s :: %s\n%s\n' "$1" "${LANGS[$2]}" "$OUT" >>"$WORK/attacks.log"
}
# The victim ran to its end and exited 0 (no SIGBUS, no hang), and printed lines matching $3.
survived() { grep -q "HOSTILE\[$1\]: victim exit 0 after" <<<"$OUT" && grep -q "^$2 alive" <<<"$OUT" && grep -qE "$3" <<<"$OUT"; }

for i in 0 1 2; do
  l=${LANGS[$i]}
  for a in unsealed shrink-only-seal huge-2g empty size-lie eventfd-bells pipe-bells; do
    attack "$a" "$i"
    check "$l: '$a' is refused at accept with a protocol error" survived "$a" "$l" "^$l accept err.*([Pp]rotocol|-[0-9]+: channel)"
  done
  attack truncate "$i"
  check "$l: truncate: the kernel refuses to shrink the memory" grep -q "HOSTILE\[truncate\]: the kernel refused" <<<"$OUT"
  check "$l: truncate: the victim reads and sends on" survived truncate "$l" "^$l send ok"
  for a in bell-block bell-full bell-spam; do
    attack "$a" "$i"
    check "$l: $a: sends do not block (and the victim ends normally)" survived "$a" "$l" "^$l send ok"
    check "$l: $a: no send failed" fails grep -q "^$l send err" <<<"$OUT"
  done
  for a in head-beyond len-huge bad-seq; do
    attack "$a" "$i"
    check "$l: $a: the peer counts as gone (unavailable), sends too" survived "$a" "$l" "^$l send err.*(went away|[Uu]navailable)"
  done
  # A lying read position is seen when the producer next needs it (libcolo and Go: only when the
  # ring looks full); until then the victim just runs.
  attack tail-beyond "$i"
  check "$l: tail-beyond: the victim ends normally" survived tail-beyond "$l" "^$l (send|read) "
  attack die-now "$i"
  check "$l: die-now: read says the peer went away" survived die-now "$l" "^$l read err.*went away"
  check "$l: die-now: and a send after that fails too, never OK" survived die-now "$l" "^$l send err.*went away"
  check "$l: die-now: no send succeeded once a read said the peer went away" \
    fails grep -q "^$l send ok" <<<"$(sed -n "/^$l read err.*went away/,\$p" <<<"$OUT")"
done

# --- through the real colo-node: libcolo side 0 (colo-bench-ipc ping), hostile Python side 1 ---
start_agent
CONF='{"cniVersion":"1.1.0","name":"colo-hc","type":"colo-cni","agentSocket":"'$WORK/run/cni/cni.sock'","failurePolicy":"closed","logFile":"'$WORK/colo-cni.log'","prevResult":{"cniVersion":"1.1.0","ips":[{"address":"198.18.16.1/24"}]}}'
add_pod() {  # add_pod NAME
  make_netns "chc$TAG-$1"
  jq -c '.runtimeConfig={"io.kubernetes.cri.pod-annotations":{"colo.dev/enabled":"true"}}' <<<"$CONF" |
    env -i CNI_COMMAND=ADD CNI_CONTAINERID="hc$1" CNI_NETNS="/var/run/netns/chc$TAG-$1" CNI_IFNAME=eth0 CNI_PATH=/x \
      CNI_ARGS="K8S_POD_UID=uid-hc$1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$1" "$COLO_BIN/colo-cni" >/dev/null
}
add_pod victim
add_pod evil
HPID=""
# The hostile side may have ended by itself (its listener closes with the victim's channel): a kill
# that finds nothing is not a failure (set -e would end the test at the last command of an && list).
kill_hostile() { if [[ -n $HPID ]]; then kill -KILL "$HPID" 2>/dev/null || true; fi; }
on_exit kill_hostile
for a in truncate bellblock; do
  ip netns exec "chc$TAG-evil" /usr/bin/python3 "$H/hostile_side1.py" "evil-$a" "$a" >"$WORK/hostile-$a.log" 2>&1 &
  HPID=$!
  for _ in $(seq 1 100); do grep -q serving "$WORK/hostile-$a.log" && break; sleep 0.05; done
  rc=0
  ip netns exec "chc$TAG-victim" timeout 30 \
    "$COLO_BIN/colo-bench-ipc" ping --to "evil-$a" --via channel --size 64 --iters 5000 >"$WORK/victim-$a.log" 2>&1 || rc=$?
  kill_hostile
  wait "$HPID" 2>/dev/null || true
  HPID=""
  check "real node, $a: the agent's memory is sealed (shrink, grow, seal) and the bells are sockets" grep -q "seals 0x7, bells sockets" "$WORK/hostile-$a.log"
  if [[ $a == truncate ]]; then
    check "real node, truncate: the hostile pod's ftruncate is refused" grep -q "ftruncate refused" "$WORK/hostile-$a.log"
  else
    check "real node, bellblock: the attack ran" grep -q "queue filled" "$WORK/hostile-$a.log"
  fi
  check "real node, $a: libcolo side 0 finished its pings (exit 0, not SIGBUS 135, not hung 124; was $rc)" test "$rc" = 0
  cp "$WORK/hostile-$a.log" "$WORK/victim-$a.log" "${HOSTILE_LOGS:-$WORK}/" 2>/dev/null || true
  check "real node, $a: and measured all of them" grep -qE "^[0-9.]+ [0-9.]+" "$WORK/victim-$a.log"
done
finish
