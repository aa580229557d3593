#!/usr/bin/env bash
# Per-pod splice (colo.dev/splice) under datapath: auto on the real kernel, and the guard that
# withdraws a declared pod on its first blocking read. Pods are network namespaces on a bridge;
# sock_ops attached to a cgroup of this test's own; maps pinned in a private directory. Proof of
# splice from the veth counters. On a kernel that passes every self-test check (no per-pod mode)
# the per-pod part is skipped and says so.
source "$(dirname "$0")/kube_lib.sh"

bpf_sandbox colo-it

# --- check-kernel: the self-test alone, and what this kernel fails ---
set +e
"$COLO_BIN/colo-node" check-kernel >"$WORK/check.txt" 2>"$WORK/check.err"
CHECK_RC=$?
set -e
cat "$WORK/check.txt"
report() { awk -v c="$1" '$1 == c {$1 = ""; print substr($0, 2)}' "$WORK/check.txt"; }
check "check-kernel ran every check on IPv4 and IPv6" test "$(grep -cE '^  [a-z_0-9]+ +(ok|FAIL)' "$WORK/check.txt")" -ge 28
check "check-kernel left no cgroup or pin dir behind" bash -c "! ls -d $CG_ROOT/colo-check-kernel-* /sys/fs/bpf/colo-check-kernel-* 2>/dev/null | grep -q ."
for c in blocking_read_signal blocking_read_rst fionread_normal_path splice_read urgent_data; do
  for sfx in "" _ipv6; do
    R=$(report "$c$sfx")
    if [[ $R == ok ]]; then
      echo "note: $c$sfx passes on this kernel ($(uname -r))"
    else
      check "check-kernel: $c$sfx fails as expected here: ${R:0:90}" grep -qE "^FAIL: .*(EAGAIN|temporarily unavailable|FIONREAD says 0|splice\(2\) from the socket got [0-9]+ of|urgent byte \(MSG_OOB\) came in band)" <<<"$R"
      check "check-kernel: $c$sfx is marked covered by colo.dev/splice" grep -q "covered by colo.dev/splice" <<<"$R"
    fi
  done
done
# Interrupted mid-run (SIGTERM, SIGHUP like SIGINT): it cleans up, then ends by the signal.
for sig in TERM HUP; do
  "$COLO_BIN/colo-node" check-kernel >"$WORK/check-$sig.txt" 2>&1 &
  P=$!
  sleep 0.5
  kill -$sig $P
  set +e; wait $P; RC=$?; set -e
  check "check-kernel killed by SIG$sig mid-run left no cgroup or pin dir behind (rc $RC)" \
    bash -c "! ls -d $CG_ROOT/colo-check-kernel-* /sys/fs/bpf/colo-check-kernel-* 2>/dev/null | grep -q ."
done
# The splice(2) watch is a perf tracepoint found through tracefs, which a container's /sys lacks
# (the chart's colo-node): colo-node mounts it. Tried in a private mount namespace of the test's,
# with tracefs unmounted there only.
unshare -m --propagation private bash -c 'umount /sys/kernel/tracing && ! mountpoint -q /sys/kernel/tracing && echo unmounted && exec "$0" check-kernel' \
  "$COLO_BIN/colo-node" >"$WORK/check-notracefs.txt" 2>&1 || true
check "no tracefs mounted: check-kernel mounts it and the guard still watches splice(2) readers" \
  bash -c "grep -qx unmounted '$WORK/check-notracefs.txt' && grep -q 'splice(2) readers: tracepoint syscalls/sys_enter_splice' '$WORK/check-notracefs.txt'"
check "tracefs is still mounted here (the test unmounted it only in its own mount namespace)" mountpoint -q /sys/kernel/tracing
if grep -q FAIL "$WORK/check.txt"; then
  check "check-kernel exits 1 when a check fails" test "$CHECK_RC" -eq 1
else
  check "check-kernel exits 0 when every check passes" test "$CHECK_RC" -eq 0
fi

BR=csp$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/sp.conflist
write_conflist "$CONF" colo-sp "$BR" 198.18.9.0/24 closed false
DP=(--cgroup-path "$CG" --bpf-pin-dir "$PIN")

start_agent --datapath auto "${DP[@]}"
STATUS=$(agent_get /readyz | jq -c .checks.datapath)
echo "datapath (auto): $(jq -c '{state, reason, guard}' <<<"$STATUS")"
if [[ $(jq -r .state <<<"$STATUS") != per-pod ]]; then
  echo "datapath is $(jq -r .state <<<"$STATUS") here, not per-pod: nothing more to test on this kernel"
  check "not per-pod only because the kernel passed or failed an uncovered check" grep -qE "self-test (passed|failed)" <<<"$(jq -r .reason <<<"$STATUS")"
  finish
  exit $?
fi
check "auto: per-pod, and the guard is loaded" grep -q '^loaded' <<<"$(jq -r .guard <<<"$STATUS")"
check "the guard passed its self-test check" test "$(metric 'colo_datapath_selftest{check="guard"}')" == 1

for p in a b c d; do make_netns "csp$TAG-$p"; done
ns() { echo "/var/run/netns/csp$TAG-$1"; }
chain ADD "$CONF" spa "$(ns a)" '{"colo.dev/enabled":"true","colo.dev/splice":"true"}' >"$WORK/a.json"
chain ADD "$CONF" spb "$(ns b)" '{"colo.dev/enabled":"true","colo.dev/splice":"True"}' >"$WORK/b.json"
chain ADD "$CONF" spc "$(ns c)" '{"colo.dev/enabled":"true"}' >"$WORK/c.json"
chain ADD "$CONF" spd "$(ns d)" '{"colo.dev/enabled":"true","colo.dev/splice":"yes"}' >"$WORK/d.json"
ip_of() { jq -r '.ips[0].address' "$WORK/$1.json" | cut -d/ -f1; }
veth_bytes() { ip -n "csp$TAG-$1" -s -j link show eth0 | jq '.[0].stats64.rx.bytes + .[0].stats64.tx.bytes'; }
counter() { metric "colo_datapath_$1"; }
state_of() { agent_get /debug/pods | jq -r --arg n "pod-$1" '.pods[] | select(.name == $n) | .splice.state'; }
TC=$COLO_BIN/colo-tcpcheck
PORT=7100
serve() {
  local pod=$1
  shift
  PORT=$((PORT + 1))
  # BIND='[::]': a dual-stack IPv6 socket, as Go, Java and Python servers listen by default.
  ip netns exec "csp$TAG-$pod" "$TC" serve --bind "${BIND:-$(ip_of "$pod")}:$PORT" --timeout-s 60 "$@" >>"$WORK/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do
    ip netns exec "csp$TAG-$pod" ss -Hltn "sport = :$PORT" | grep -q . && return 0
    sleep 0.02
  done
  return 1
}
send() { local from=$1 to=$2; shift 2; ip netns exec "csp$TAG-$from" "$TC" send --to "$(ip_of "$to"):$PORT" "$@"; }

check "/debug/pods: a and b spliced, c not declared, d's value not understood" \
  test "$(agent_get /debug/pods | jq -r '[.pods[] | "\(.name)=\(.splice.state)"] | sort | join(" ")')" == \
  "pod-spa=spliced pod-spb=spliced pod-spc=not_declared pod-spd=not_declared"
check "/debug/pods says why c is not spliced" grep -q 'annotate the pod colo.dev/splice' <<<"$(agent_get /debug/pods | jq -r '.pods[] | select(.name == "pod-spc") | .splice.reason')"
check "/debug/pods says d's value is not understood" grep -q "value 'yes' is not understood" <<<"$(agent_get /debug/pods | jq -r '.pods[] | select(.name == "pod-spd") | .splice.reason')"
check "colo_datapath_pods{state=spliced} is 2" test "$(metric 'colo_datapath_pods{state="spliced"}')" == 2
check "colo_datapath_pods{state=not_declared} is 2" test "$(metric 'colo_datapath_pods{state="not_declared"}')" == 2
check "the bad value is counted" test "$(metric colo_splice_annotation_not_understood_total)" == 1
check "and logged" grep -q "colo.dev/splice value 'yes' is not understood" "$WORK/agent.log"

# --- two declared pods, event-driven on both ends: spliced, the veth stays flat ---
V0=$(veth_bytes a) S0=$(counter sockets_inserted_total) R0=$(counter bytes_redirected_total)
serve b --conns 1 --mode epoll
check "256 MiB a -> b, epoll server, polling client, checksummed" send a b --bytes 268435456 --read poll
check "server (epoll) saw no error" wait "$SERVER"
V1=$(veth_bytes a) S1=$(counter sockets_inserted_total) R1=$(counter bytes_redirected_total)
echo "declared a -> b: veth carried $((V1 - V0)) bytes, colo redirected $((R1 - R0)) bytes, $((S1 - S0)) sockets inserted"
check "both ends were spliced" test $((S1 - S0)) -eq 2
check "pod a's veth carried under 64 KiB while 256 MiB moved" test $((V1 - V0)) -lt 65536
check "at least 256 MiB redirected" test $((R1 - R0)) -ge 268435456
check "no blocking read was seen in pod a" test "$(metric 'colo_datapath_blocking_reads_total{namespace="default",pod="pod-spa"}')" == 0
check "pod a is still spliced" test "$(state_of spa)" == spliced

# --- the same to a dual-stack server (listening on "::"): its end is IPv4 on an IPv6 socket ---
V0=$(veth_bytes a) S0=$(counter sockets_inserted_total)
BIND='[::]' serve b --conns 1 --mode epoll
check "64 MiB a -> b's dual-stack server, checksummed" send a b --bytes 67108864 --read poll
check "dual-stack server saw no error" wait "$SERVER"
V1=$(veth_bytes a) S1=$(counter sockets_inserted_total)
check "both ends were spliced (the server's as the IPv4 address it is)" test $((S1 - S0)) -eq 2
check "pod a's veth carried under 64 KiB while 64 MiB moved" test $((V1 - V0)) -lt 65536

# --- an undeclared pod with a blocking client: not spliced, never sees EAGAIN ---
V0=$(veth_bytes c) S0=$(counter sockets_inserted_total) K0=$(counter skipped_not_spliceable_total)
serve b --conns 300 --mode epoll
check "300 connections c -> b, each write, shutdown, blocking read of the reply (no EAGAIN)" send c b --conns 300 --bytes 10000 --read blocking
check "server saw all 300" wait "$SERVER"
V1=$(veth_bytes c) S1=$(counter sockets_inserted_total) K1=$(counter skipped_not_spliceable_total)
check "nothing was spliced" test $((S1 - S0)) -eq 0
check "the sockets were skipped as not spliceable (c did not declare)" test $((K1 - K0)) -ge 600
check "the traffic went over c's veth" test $((V1 - V0)) -ge 3000000

# --- the guard: a blocking reader in declared pod a, while colo-node is down (SIGKILL): the guard's
# links are pinned next to sock_ops, so it still watches the pods that are still spliced ---
check "the guard's links are pinned" test "$(find "$PIN" -maxdepth 1 -name 'guard_link_*' | wc -l)" -ge 1
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=""
check "colo-node killed: the guard's pinned links are still there" bash -c "for l in $PIN/guard_link_*; do bpftool link show pinned \$l >/dev/null || exit 1; done"
V0=$(veth_bytes a)
serve b --conns 1 --mode epoll
# (the blocking read itself may meet the kernel's EAGAIN fault: what is checked is the guard)
send a b --bytes 1000000 --read poll-blocking || echo "note: the blocking reader met the EAGAIN fault"
wait "$SERVER" || true
V1=$(veth_bytes a)
check "that connection was spliced (a was still declared and safe; a's veth carried $((V1 - V0)) bytes)" test $((V1 - V0)) -lt 65536
check "while colo-node was down the guard marked a unsafe in the pod map itself" bash -c "bpftool -j map dump pinned '$PIN/colo_pods' | jq -e '[.[] | .formatted.value.flags // 0 | select(. >= 4 and (. / 4 | floor) % 2 == 1)] | length == 1' >/dev/null"
start_agent --datapath auto "${DP[@]}"
check "after the restart the guard is loaded and pinned again" test "$(find "$PIN" -maxdepth 1 -name 'guard_link_*' | wc -l)" -ge 1
DOWN_LINE='seen by the pinned guard while colo-node was down'
check "the blocking read seen while colo-node was down is logged after the restart, naming the process" \
  grep -qE "pod default/pod-spa .*guard: process colo-tcpcheck \(pid [0-9]+\) of this pod did a blocking read on a spliced socket .*$DOWN_LINE" "$WORK/agent.log"
check "pod a is unsafe in /debug/pods" test "$(state_of spa)" == unsafe
check "colo_datapath_pods{state=unsafe} is 1" test "$(metric 'colo_datapath_pods{state="unsafe"}')" == 1
V0=$(veth_bytes a) S0=$(counter sockets_inserted_total)
serve b --conns 20 --mode epoll
check "20 new connections a -> b, data intact" send a b --conns 20 --bytes 1000000 --read poll
check "server saw all 20" wait "$SERVER"
V1=$(veth_bytes a) S1=$(counter sockets_inserted_total)
check "pod a's new connections are not spliced" test $((S1 - S0)) -eq 0
check "and went over the veth" test $((V1 - V0)) -ge 20000000
check "pod b (event-driven servers only) is still spliced" test "$(state_of spb)" == spliced
check "the pod map marks a unsafe (the BPF guard did it)" bash -c "bpftool -j map dump pinned '$PIN/colo_pods' | jq -e '[.[] | .formatted.value.flags // 0 | select(. >= 4 and (. / 4 | floor) % 2 == 1)] | length == 1' >/dev/null"

# --- a splice(2) reader in declared pod g (Go's io.Copy between two TCP connections does this):
# tcp_splice_read never reads the splice's queue. The guard sees the splice(2) call itself. ---
check "the guard watches splice(2) readers" grep -q 'splice(2) readers: tracepoint syscalls/sys_enter_splice' <<<"$(agent_get /readyz | jq -r .checks.datapath.guard)"
make_netns "csp$TAG-g"
chain ADD "$CONF" spg "$(ns g)" '{"colo.dev/enabled":"true","colo.dev/splice":"true"}' >"$WORK/g.json"
check "pod g is spliced before it reads" test "$(state_of spg)" == spliced
S0=$(counter sockets_inserted_total) R0=$(counter bytes_redirected_total)
serve g --conns 1 --mode splice
set +e
send b g --bytes 10000 --read poll
FIRST=$?
set -e
wait "$SERVER" || true
S1=$(counter sockets_inserted_total) R1=$(counter bytes_redirected_total)
check "that connection b -> g was spliced" test $((S1 - S0)) -eq 2
if ((R1 - R0 >= 10000)); then
  check "the 10000 bytes sent over the splice never reached g's splice(2) reader" test "$FIRST" -ne 0
else
  echo "note: the first write raced g's insertion and took the normal path ($((R1 - R0)) bytes redirected)"
fi
check "the guard counted g's splice(2) read" test "$(metric 'colo_datapath_splice_reads_total{namespace="default",pod="pod-spg"}')" -ge 1
check "and saw no blocking read in g (splice(2) is its own kind)" test "$(metric 'colo_datapath_blocking_reads_total{namespace="default",pod="pod-spg"}')" == 0
check "pod g is withdrawn (unsafe in /debug/pods)" test "$(state_of spg)" == unsafe
check "/debug/pods says splice(2)" grep -q 'with splice(2)' <<<"$(agent_get /debug/pods | jq -r '.pods[] | select(.name == "pod-spg") | .splice.reason')"
check "the log names the process and splice(2)" \
  grep -qE "pod default/pod-spg .*guard: process colo-tcpcheck \(pid [0-9]+\) of this pod read a spliced socket .* with splice\(2\)" "$WORK/agent.log"
V0=$(veth_bytes g) S0=$(counter sockets_inserted_total)
serve g --conns 5 --mode splice
check "5 new connections b -> g, g reading with splice(2): every byte arrives, checksummed" send b g --conns 5 --bytes 1000000 --read poll
check "g's splice(2) server agrees" wait "$SERVER"
V1=$(veth_bytes g) S1=$(counter sockets_inserted_total)
check "g's new connections are not spliced" test $((S1 - S0)) -eq 0
check "and went over g's veth" test $((V1 - V0)) -ge 5000000

# --- a restarted colo-node remembers that a was withdrawn ---
stop_agent
start_agent --datapath auto "${DP[@]}"
check "after a restart pod a is still unsafe" test "$(state_of spa)" == unsafe
check "so is g, for its splice(2) read" grep -q 'a splice(2) read on a spliced socket' <<<"$(agent_get /debug/pods | jq -r '.pods[] | select(.name == "pod-spg") | .splice.reason')"
check "and b still spliced" test "$(state_of spb)" == spliced
check "what the guard saw while colo-node was down was told once, not again at the next restart" test "$(grep -c "$DOWN_LINE" "$WORK/agent.log")" -eq 1
stop_agent
# --- datapath: off after runs with it on: the sock_ops and guard links they pinned go ---
check "the earlier run left sock_ops and guard links pinned" test "$(find "$PIN" -maxdepth 1 \( -name sockops_link -o -name 'guard_link_*' \) | wc -l)" -ge 2
start_agent --datapath off "${DP[@]}"
check "datapath: off: every pod's state is off" test "$(agent_get /debug/pods | jq -r '[.pods[].splice.state] | unique | join(",")')" == off
check "colo_datapath_pods{state=off} counts all five" test "$(metric 'colo_datapath_pods{state="off"}')" == 5
check "datapath: off removed the sock_ops and guard links pinned before" test "$(find "$PIN" -maxdepth 1 \( -name sockops_link -o -name 'guard_link_*' \) | wc -l)" -eq 0
check "nothing is attached at the test's cgroup any more" bash -c "! bpftool cgroup show '$CG' | grep -q sock_ops"
check "the maps stay pinned (connections spliced before keep their path)" test -e "$PIN/colo_socks"
check "the log says so" grep -q "datapath: off: removed .* link(s) an earlier run pinned" "$WORK/agent.log"
stop_agent
for p in a b c d g; do chain DEL "$CONF" "sp$p" "$(ns "$p")" >/dev/null; done

# --- Kubernetes mode: the annotation from the API, Events on the pod ---
make_test_pki
start_fake_api
kubeconfig "$WORK/kubeconfig" cert
for p in e f h; do make_netns "csp$TAG-$p"; done
for p in e f h; do
  fake POST /fake/pods "$(pod_json "pod-sp$p" "$NODE" '{"colo.dev/enabled":"true","colo.dev/splice":"true"}' | jq -c --arg u "uid-sp$p" '.metadata.uid = $u')" >/dev/null
done
start_agent --datapath auto "${DP[@]}" --mode kubernetes --kubeconfig "$WORK/kubeconfig" --watch-timeout-seconds 3
check "kubernetes mode: per-pod" test "$(agent_get /readyz | jq -r .checks.datapath.state)" == per-pod
chain ADD "$CONF" spe "$(ns e)" >"$WORK/e.json"  # no runtime annotations: the API's count
chain ADD "$CONF" spf "$(ns f)" >"$WORK/f.json"
chain ADD "$CONF" sph "$(ns h)" >"$WORK/h.json"
check "pods e, f and h spliced from the API's annotation" wait_for 10 bash -c "[[ \$(curl -sf http://$AGENT_HTTP/debug/pods | jq -r '[.pods[] | .splice.state] | join(\" \")') == 'spliced spliced spliced' ]]"
events() { fake GET /fake/events | jq -r --arg n "$1" '[.[] | select(.involvedObject.name==$n) | .reason] | join(",")'; }
has_event() { [[ ,$(events "$1"), == *,$2,* ]]; }
check "a Spliced Event on pod e" wait_for 5 bash -c "$(declare -f fake events has_event); FAKE_URL=$FAKE_URL PKI=$PKI; has_event pod-spe Spliced"
serve f --conns 1 --mode epoll
check "e -> f with a blocking read of the reply" send e f --bytes 100000 --read poll-blocking
check "server agrees" wait "$SERVER"
check "a SpliceUnsafe Warning Event names pod e" wait_for 10 bash -c "$(declare -f fake events has_event); FAKE_URL=$FAKE_URL PKI=$PKI; has_event pod-spe SpliceUnsafe"
check "the Event says which process" grep -q "process colo-tcpcheck (pid" <<<"$(fake GET /fake/events | jq -r '.[] | select(.reason == "SpliceUnsafe") | .message')"
# A splice(2) reader in declared pod h while colo-node is down: the pinned guard withdraws h by
# itself; the restarted colo-node tells it (log, SpliceUnsafe Event), once.
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=""
serve h --conns 1 --mode splice
send f h --bytes 10000 --read poll || echo "note: h's splice(2) reader did not get the spliced data (expected)"
wait "$SERVER" || true
start_agent --datapath auto "${DP[@]}" --mode kubernetes --kubeconfig "$WORK/kubeconfig" --watch-timeout-seconds 3
check "after the restart pod h is unsafe" test "$(state_of sph)" == unsafe
check "a SpliceUnsafe Warning Event names pod h" wait_for 10 bash -c "$(declare -f fake events has_event); FAKE_URL=$FAKE_URL PKI=$PKI; has_event pod-sph SpliceUnsafe"
check "it names the process and splice(2), seen while colo-node was down" \
  grep -qE "process colo-tcpcheck \(pid [0-9]+\) of this pod read a spliced socket .* with splice\(2\) \(seen by the pinned guard while colo-node was down" \
  <<<"$(fake GET /fake/events | jq -r '.[] | select(.involvedObject.name == "pod-sph" and .reason == "SpliceUnsafe") | .message')"
check "colo_datapath_splice_reads_total counts it" test "$(metric 'colo_datapath_splice_reads_total{namespace="default",pod="pod-sph"}')" -ge 1
annotate pod-spf '{"colo.dev/splice":"false"}'
check "withdrawing f's declaration in the API takes it out of the splice" wait_for 10 bash -c "[[ \$(curl -sf http://$AGENT_HTTP/debug/pods | jq -r '.pods[] | select(.name == \"pod-spf\") | .splice.state') == not_declared ]]"
check "a SpliceNotDeclared Event on pod f" wait_for 5 bash -c "$(declare -f fake events has_event); FAKE_URL=$FAKE_URL PKI=$PKI; has_event pod-spf SpliceNotDeclared"
stop_agent
for p in e f h; do chain DEL "$CONF" "sp$p" "$(ns "$p")" >/dev/null; done

finish
