#!/usr/bin/env bash
# The transparent splice on the real kernel: pods as network namespaces on a bridge, colo-node's
# sock_ops attached to a cgroup of this test's own (the test moves itself into it), maps pinned in
# a private directory. Proof of splice from the veth counters, not only our own.
source "$(dirname "$0")/lib.sh"

bpf_sandbox colo-it

BR=cdp$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/dp.conflist
write_conflist "$CONF" colo-dp "$BR" 198.18.7.0/24 closed false
DP=(--cgroup-path "$CG" --bpf-pin-dir "$PIN")
# within S CMD...: polls CMD every 50 ms for up to S x TIME_SCALE seconds. Waits for a process to
# get ready are bounded only to catch a hang: a loaded machine (other builds, a sanitizer) is slow.
within() {
  local deadline=$((SECONDS + $1 * TIME_SCALE))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}
listening() { ip netns exec "cdp$TAG-$1" ss -Hltn "sport = :$2" | grep -q .; }

# --- auto: the self-test decides, and says why ---
start_agent --datapath auto "${DP[@]}"
STATUS=$(agent_get /readyz | jq -c .checks.datapath)
echo "datapath (auto): $STATUS"
FAILED_CHECKS=$(jq -r '[.selftest | to_entries[] | select(.value != "ok") | .key] | join(",")' <<<"$STATUS")
# Checks a pod's colo.dev/splice declaration covers (blocking readers, splice(2), urgent data); the guard's own check.
COVERED='^(blocking_read|blocking_read_signal|blocking_read_rst|fionread_normal_path|splice_read|urgent_data)(_ipv6)?$'
UNCOVERED=$(tr ',' '\n' <<<"$FAILED_CHECKS" | grep -Ev "$COVERED|^guard(_ipv6)?$" | paste -sd, || true)
if [[ -n $UNCOVERED ]]; then
  check "auto: a failed self-test check no declaration covers keeps the datapath off" test "$(jq -r .state <<<"$STATUS")" == off
  check "auto: /readyz names the failed check ($UNCOVERED)" grep -q "${UNCOVERED%%,*}" <<<"$(jq -r .reason <<<"$STATUS")"
  check "auto: the metric says which check failed" test "$(metric "colo_datapath_selftest{check=\"${UNCOVERED%%,*}\"}")" == 0
  check "auto: colo-node is still ready (everything else works)" test "$(agent_get /readyz | jq .ready)" == true
  check "auto: sock_ops is detached when the datapath is off" bash -c "! bpftool cgroup show '$CG' | grep -q colo"
elif [[ -n $FAILED_CHECKS && $(jq -r .guard <<<"$STATUS") == loaded* ]]; then
  # splice_test.sh covers per-pod mode in depth.
  check "auto: only covered checks failed ($FAILED_CHECKS): per-pod splice, guarded" test "$(jq -r .state <<<"$STATUS")" == per-pod
  check "auto: the metric says which check failed" test "$(metric "colo_datapath_selftest{check=\"${FAILED_CHECKS%%,*}\"}")" == 0
  check "auto: sock_ops stays attached for declared pods" bash -c "bpftool cgroup show '$CG' | grep -q sock_ops"
elif [[ -n $FAILED_CHECKS ]]; then
  check "auto: covered checks failed but the guard did not load: off" test "$(jq -r .state <<<"$STATUS")" == off
  check "auto: /readyz says the guard refused per-pod splice" grep -q "per-pod splice" <<<"$(jq -r .reason <<<"$STATUS")"
else
  check "auto: every self-test check passed and the datapath is on" test "$(jq -r .state <<<"$STATUS")" == on
fi
stop_agent

# --- on: forced, for the mechanics below ---
start_agent --datapath on "${DP[@]}"
check "datapath forced on" test "$(agent_get /readyz | jq -r .checks.datapath.state)" == on

for p in a b c; do make_netns "cdp$TAG-$p"; done
ns() { echo "/var/run/netns/cdp$TAG-$1"; }
chain ADD "$CONF" ctra "$(ns a)" '{"colo.dev/enabled":"true"}' >"$WORK/a.json"
chain ADD "$CONF" ctrb "$(ns b)" '{"colo.dev/enabled":"true"}' >"$WORK/b.json"
chain ADD "$CONF" ctrc "$(ns c)" '{"colo.dev/enabled":"false"}' >"$WORK/c.json"
ip_of() { jq -r '.ips[0].address' "$WORK/$1.json" | cut -d/ -f1; }
veth_bytes() { ip -n "cdp$TAG-$1" -s -j link show eth0 | jq '.[0].stats64.rx.bytes + .[0].stats64.tx.bytes'; }
counter() { metric "colo_datapath_$1"; }
TC=$COLO_BIN/colo-tcpcheck
PORT=7000
# serve POD ARGS...: a checksumming server in the pod, in the background, ready on return.
serve() {
  local pod=$1
  shift
  PORT=$((PORT + 1))
  ip netns exec "cdp$TAG-$pod" "$TC" serve --bind "$(ip_of "$pod"):$PORT" --timeout-s 60 "$@" >>"$WORK/serve.log" 2>&1 &
  SERVER=$!
  within 20 listening "$pod" "$PORT"
}
# Clients poll before reading the reply, as event-loop servers do: some kernels (this one among
# them, see the self-test) can return EAGAIN from a blocking read on a spliced socket.
send() { local from=$1 to=$2; shift 2; ip netns exec "cdp$TAG-$from" "$TC" send --to "$(ip_of "$to"):$PORT" --read poll "$@"; }

check "/debug/pods says pods a and b are spliced, c is not" \
  test "$(agent_get /debug/pods | jq -r '[.pods[] | "\(.name)=\(.spliced)"] | sort | join(" ")')" == "pod-ctra=true pod-ctrb=true"

# --- proof: 1 GiB between opted-in pods; the veth carries only handshake and FIN ---
V0=$(veth_bytes a) R0=$(counter bytes_redirected_total) S0=$(counter sockets_inserted_total)
serve b --conns 1
check "1 GiB a -> b with a checksum" send a b --bytes 1073741824
wait "$SERVER"
V1=$(veth_bytes a) R1=$(counter bytes_redirected_total) S1=$(counter sockets_inserted_total)
echo "veth of pod a carried $((V1 - V0)) bytes; colo redirected $((R1 - R0)) bytes; $((S1 - S0)) sockets inserted"
check "pod a's veth carried under 64 KiB while 1 GiB moved" test $((V1 - V0)) -lt 65536
check "colo's counters agree: at least 1 GiB redirected" test $((R1 - R0)) -ge 1073741824
check "both ends of the connection were inserted" test $((S1 - S0)) -eq 2

# --- control: an opted-in pod and one that is not ---
V0=$(veth_bytes a) S0=$(counter sockets_inserted_total)
serve c --conns 1
check "256 MiB a -> c (not opted in) works" send a c --bytes 268435456
wait "$SERVER"
V1=$(veth_bytes a) S1=$(counter sockets_inserted_total)
check "and went over the veth" test $((V1 - V0)) -ge 268435456
check "and was not spliced" test $((S1 - S0)) -eq 0

# --- integrity under every read mode ---
for mode in blocking nonblocking poll epoll; do
  serve b --conns 1 --mode "$mode"
  check "256 MiB spliced, server reading $mode" send a b --bytes 268435456 --seed 7
  check "server ($mode) saw no error" wait "$SERVER"
done
serve b --conns 2000
check "2000 short connections, each write, shutdown, read" send a b --conns 2000 --bytes 1000
check "server saw all 2000" wait "$SERVER"
serve b --conns 500
check "500 concurrent connections" send a b --conns 500 --parallel 500 --bytes 65536
check "server saw all 500" wait "$SERVER"
serve b --conns 1 --mode poll
send a b --bytes 1000000 --rst || true
check "RST: the server sees the abort and does not hang" wait "$SERVER"

# --- restart mid-stream ---
serve b --conns 1
send a b --bytes 4294967296 --seed 9 >"$WORK/long.log" 2>&1 &
SENDER=$!
sleep 0.5
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=""
check "a 4 GiB stream survives colo-node being killed mid-stream" wait "$SENDER"
check "and the server agrees" wait "$SERVER"
start_agent --datapath on "${DP[@]}"
check "the new colo-node reuses the pinned maps and link" grep -q "reused pinned maps and link in $PIN" "$WORK/agent.log"
S0=$(counter sockets_inserted_total)
serve b --conns 1
check "a new connection after the restart works" send a b --bytes 67108864
wait "$SERVER"
check "and is spliced again" test $(($(counter sockets_inserted_total) - S0)) -eq 2

# --- IPv6: dual-stack pods (host-local with an IPv6 range from 2001:2::/48) are spliced too ---
DUAL=$WORK/dual.conflist
write_conflist "$DUAL" colo-dp6 "$BR" 198.18.27.0/24,2001:2:7::/64 closed false
for p in d e; do make_netns "cdp$TAG-$p"; done
chain ADD "$DUAL" ctrd "$(ns d)" '{"colo.dev/enabled":"true"}' >"$WORK/d.json"
chain ADD "$DUAL" ctre "$(ns e)" '{"colo.dev/enabled":"true"}' >"$WORK/e.json"
ip6_of() { jq -r '.ips[] | select(.address | test(":")) | .address' "$WORK/$1.json" | cut -d/ -f1; }
# in_pod_map IPV6: the pinned pod map has the key {AF_INET6, address} (raw key bytes: family as a
# little-endian u32, then the 16 address bytes).
in_pod_map() {
  bpftool -j map dump pinned "$PIN/colo_pods" | python3 -c '
import ipaddress, json, sys
want = [10, 0, 0, 0] + list(ipaddress.IPv6Address(sys.argv[1]).packed)
sys.exit(0 if any([int(b, 16) for b in e["key"]] == want for e in json.load(sys.stdin)) else 1)' "$1"
}
check "the pod map holds pod d's IPv6 address ($(ip6_of d))" in_pod_map "$(ip6_of d)"
check "/debug/pods says pods d and e are spliced" \
  test "$(agent_get /debug/pods | jq -r '[.pods[] | select(.name == "pod-ctrd" or .name == "pod-ctre") | .spliced] | join(" ")')" == "true true"
# serve6 POD: like serve, on the pod's IPv6 address
serve6() {
  local pod=$1
  shift
  PORT=$((PORT + 1))
  ip netns exec "cdp$TAG-$pod" "$TC" serve --bind "[$(ip6_of "$pod")]:$PORT" --timeout-s 60 "$@" >>"$WORK/serve.log" 2>&1 &
  SERVER=$!
  within 20 listening "$pod" "$PORT"
}
V0=$(veth_bytes d) R0=$(counter bytes_redirected_total) S0=$(counter sockets_inserted_total)
serve6 e --conns 1
check "256 MiB d -> e over IPv6 with a checksum" ip netns exec "cdp$TAG-d" "$TC" send --to "[$(ip6_of e)]:$PORT" --read poll --bytes 268435456
wait "$SERVER"
V1=$(veth_bytes d) R1=$(counter bytes_redirected_total) S1=$(counter sockets_inserted_total)
echo "IPv6: veth of pod d carried $((V1 - V0)) bytes; colo redirected $((R1 - R0)) bytes; $((S1 - S0)) sockets inserted"
check "IPv6: both ends of the connection were inserted" test $((S1 - S0)) -eq 2
check "IPv6: at least 256 MiB redirected" test $((R1 - R0)) -ge 268435456
check "IPv6: pod d's veth carried under 64 KiB" test $((V1 - V0)) -lt 65536
chain DEL "$DUAL" ctre "$(ns e)" >/dev/null
check "after pod e's DEL its IPv6 address left the pod map" fails in_pod_map "$(ip6_of e)"
chain DEL "$DUAL" ctrd "$(ns d)" >/dev/null

# --- a pod that leaves the node leaves the map ---
pod_map_size() { bpftool -j map dump pinned "$PIN/colo_pods" | jq length; }
check "the pod map holds pods a and b" test "$(pod_map_size)" -eq 2
chain DEL "$CONF" ctrb "$(ns b)" >/dev/null
check "after pod b's DEL only pod a is left in the pod map" test "$(pod_map_size)" -eq 1

# --- one colo-node per pin dir (kind nodes share the host's bpffs) ---
# other_agent: a second node's colo-node on the same pin dir; prints its datapath status.
# The log is emptied here, not by the background job's own redirection, which may run after the
# wait below has already read the previous run's "ready" line (and port) from it.
other_agent() {
  : >"$WORK/other.log"
  "$COLO_BIN/colo-node" --run-dir "$WORK/other/run" --cni-socket "$WORK/other/run/cni.sock" --state-dir "$WORK/other/state" \
    --http-address 127.0.0.1:0 --node-name "other-$TAG.example" --datapath on "${DP[@]}" >>"$WORK/other.log" 2>&1 &
  local pid=$!
  within 20 grep -q "ready on node" "$WORK/other.log" || echo "the other colo-node is not ready after $((20 * TIME_SCALE)) s: $(tail -n 5 "$WORK/other.log")" >&2
  curl -sf --max-time $((5 * TIME_SCALE)) "http://$(grep -o 'http: serving .* on [0-9.:]*' "$WORK/other.log" | awk '{print $NF}')/readyz" | jq -r .checks.datapath.reason
  kill -TERM "$pid"
  wait "$pid" || true
}
REASON=$(other_agent)
check "a second colo-node on a pin dir in use is refused, saying why ($REASON)" grep -q "held by another colo-node" <<<"$REASON"
check "... and leaves the first one's link pinned" test -e "$PIN/sockops_link"
stop_agent
REASON=$(other_agent)
check "another node's pins are refused too when their colo-node is stopped ($REASON)" grep -q "holds the datapath of node it-$TAG" <<<"$REASON"

# --- upgrade from colo 0.1.0, whose pin dir was shared (no owner marker): taken over, link kept ---
rm "$PIN"/owner_*  # as 0.1.0 left it
LINK_INODE=$(stat -c %i "$PIN/sockops_link")
PIN2=/sys/fs/bpf/colo-it2-$TAG
adopt_cleanup() { "$COLO_BIN/colo-node" uninstall --bpf-pin-dir "$PIN2" >/dev/null 2>&1 || true; }
on_exit adopt_cleanup
start_agent --datapath on --cgroup-path "$CG" --bpf-pin-dir "$PIN2" --legacy-bpf-pin-dir "$PIN"
check "an upgraded colo-node takes over 0.1.0's pin dir" grep -q "took over $PIN" "$WORK/agent.log"
check "... the same sock_ops link, still attached (no second one)" bash -c \
  "[[ \$(stat -c %i '$PIN2/sockops_link') == $LINK_INODE && ! -e '$PIN' && \$(bpftool cgroup show '$CG' | grep -c sock_ops) -eq 1 ]]"
stop_agent
mv "$PIN2" "$PIN"

# --- uninstall ---
stop_agent
chain DEL "$CONF" ctra "$(ns a)" >/dev/null
chain DEL "$CONF" ctrc "$(ns c)" >/dev/null
check "colo-node uninstall succeeds" "$COLO_BIN/colo-node" uninstall --bpf-pin-dir "$PIN"
check "nothing is left pinned" test ! -e "$PIN"
check "nothing is left attached to the cgroup" bash -c "! bpftool cgroup show '$CG' | grep -q colo"

finish
