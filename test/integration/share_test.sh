#!/usr/bin/env bash
# A pod's shares hold however it goes about it (the issue-13 tester's findings):
# - hugepage channel memory: asked on a connection that is closed at once while the memory is
#   kept, it stays charged to the pod's colo.dev/hugepages share until the kernel frees it;
# - the log: a pod's denied dials and a host user's refused connections are rate-limited lines,
#   while the counters keep every one;
# - descriptors: with colo-node's RLIMIT_NOFILE lowered to 200 above what it uses, one pod holding
#   5000 connections leaves the CNI path its reserve: new pods are still added.
source "$(dirname "$0")/lib.sh"

PEER="python3 $(dirname "$0")/share_peer.py"
ATTACK="python3 $(dirname "$0")/attack.py"
BR=csh$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/sh.conflist
write_conflist "$CONF" colo-sh "$BR" 198.18.15.0/24 closed false
# Two free 2 MiB pages for the share's channels; raised only, restored at exit.
FREE=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
((FREE >= 2)) || reserve_hugepages $(($(cat /proc/sys/vm/nr_hugepages) + 2 - FREE))
start_agent --log-level info --hugepages-budget 16Mi
ns() { echo "/var/run/netns/csh$TAG-$1"; }
in_pod() { local p=$1; shift; ip netns exec "csh$TAG-$p" "$@"; }
ON='{"colo.dev/enabled":"true"}'
add_pod() { make_netns "csh$TAG-$1"; chain ADD "$CONF" "ctr$1" "$(ns "$1")" "${2:-$ON}" >"$WORK/$1.json"; }
log_lines() { grep -c -- "$1" "$WORK/agent.log" || true; }

# --- hugepages: 4 channels on closed connections, a 4 MiB share: 2 hugepage channels, no more.
add_pod h '{"colo.dev/enabled":"true","colo.dev/hugepages":"4Mi"}'
H=$(in_pod h $PEER huge 4)
echo "huge: $H"
check "a pod gets hugepage channels within its share only, though it closes each asking connection" \
  test "$(jq -c .kinds <<<"$H")" = '["hugepages","hugepages","memfd","memfd"]'
check "its share comes back once the kernel has freed the memory" test "$(jq -r .after <<<"$H")" = hugepages
check "the fallbacks are counted as the share's" \
  test "$(agent_get /metrics | awk '/^colo_broker_channel_fallbacks_total\{reason="pod_share"\}/ {print $2}')" -ge 2

# --- the log: 3000 denied dials, a host user's 3 s connect flood.
add_pod v
POD_NS=evil add_pod x
in_pod v $ATTACK deaf svc 30 >/dev/null &
LISTENER=$!
sleep 0.5
D=$(in_pod x $ATTACK dialname default/svc 3000)
echo "denied dials: $D"
check "every denied dial is answered permission_denied" test "$(jq -r '.codes.permission_denied' <<<"$D")" = 3000
check "and counted" test "$(metric colo_broker_denials_total)" = 3000
DENIED_LINES=$(log_lines "broker: denied:")
echo "denied-dial warnings logged: $DENIED_LINES"
check "but logged a few times, not 3000 ($DENIED_LINES lines)" test "$DENIED_LINES" -le 10
SOCK=$WORK/run/pods/uid-ctrv/colo.sock
in_pod v $ATTACK hello 3 >"$WORK/hello.json" &
HP=$!
F=$(runuser -u nobody -- $PEER connflood "$SOCK" 3)
wait "$HP"
echo "host user 'nobody' connect flood on pod v's colo.sock: $F; pod v's hello meanwhile: $(cat "$WORK/hello.json")"
REFUSED=$(agent_get /metrics | awk '/^colo_wire_connections_rejected_total\{.*reason="admission"/ {s += $2} END {print s + 0}')
REFUSED_LINES=$(log_lines "refused pid")
echo "refusals counted $REFUSED, logged $REFUSED_LINES"
check "the host user is refused" test "$(jq -r '.codes.permission_denied // 0' <<<"$F")" -gt 50
check "every refusal is counted" test "$REFUSED" -ge "$(jq -r '.codes.permission_denied' <<<"$F")"
check "a few are logged ($REFUSED_LINES lines)" test "$REFUSED_LINES" -le 10
check "pod v's own hellos went on" test "$(jq -r .errors "$WORK/hello.json")" = 0
kill "$LISTENER" 2>/dev/null || true

# --- descriptors: RLIMIT_NOFILE lowered to 200 above what colo-node uses; pod x holds 5000.
F0=$(find "/proc/$AGENT_PID/fd" -mindepth 1 | wc -l)
prlimit --pid "$AGENT_PID" --nofile=$((F0 + 200))
in_pod x $ATTACK hold 5000 8 >"$WORK/hold.json" &
HOLD=$!
sleep 3
DURING=$(find "/proc/$AGENT_PID/fd" -mindepth 1 | wc -l)
ADDS=0
for i in 1 2 3; do
  make_netns "csh$TAG-n$i"
  chain ADD "$CONF" "ctrn$i" "$(ns "n$i")" "$ON" >/dev/null 2>"$WORK/add-n$i.err" && ADDS=$((ADDS + 1))
done
echo "colo-node fds: $F0 before, $DURING while pod x holds 5000 connections (limit $((F0 + 200))); ADDs that worked: $ADDS of 3"
check "new pods are added while one pod holds 5000 connections under a low descriptor limit" test "$ADDS" = 3
check "the pods' connections left the CNI path its reserve" test "$DURING" -le $((F0 + 200 - 100))
check "what is over the budget is closed at once and counted" \
  test "$(agent_get /metrics | awk '/^colo_wire_connections_rejected_total\{.*reason="fd_budget"/ {s += $2} END {print s + 0}')" -gt 0
wait "$HOLD"
echo "attacker: $(cat "$WORK/hold.json")"
check "after the attack, a pod connects again" bash -c "ip netns exec csh$TAG-v $ATTACK hello 1 | jq -e '.errors == 0' >/dev/null"

# The summaries of the rate-limited warnings come when their 10 s window ends.
for _ in $(seq 1 60); do grep -q "more like it not logged" "$WORK/agent.log" && break; sleep 0.25; done
check "the warnings left out are summarised with their count" grep -q "broker: dials denied to pod .*: [0-9]* more like it not logged" "$WORK/agent.log"
finish
