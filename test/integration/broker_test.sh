#!/usr/bin/env bash
# listen and dial through colo-node with libcolo's examples as real processes in pods: identities
# that cannot be spoofed, namespace policy, TCP from the caller's own netns, and names that go
# away with their listener or their pod.
source "$(dirname "$0")/lib.sh"

BR=cbk$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/bk.conflist
write_conflist "$CONF" colo-bk "$BR" 198.18.9.0/24 closed false
start_agent
for p in a b c d f; do make_netns "cbk$TAG-$p"; done
ns() { echo "/var/run/netns/cbk$TAG-$1"; }
in_pod() { local p=$1; shift; ip netns exec "cbk$TAG-$p" "$@"; }
ON='{"colo.dev/enabled":"true"}'
chain ADD "$CONF" ctra "$(ns a)" "$ON" >"$WORK/a.json"
chain ADD "$CONF" ctrb "$(ns b)" "$ON" >"$WORK/b.json"
chain ADD "$CONF" ctrc "$(ns c)" "$ON" >/dev/null
POD_NS=other chain ADD "$CONF" ctrd "$(ns d)" "$ON" >/dev/null
chain ADD "$CONF" ctrf "$(ns f)" '{"colo.dev/enabled":"true","colo.dev/allow-from":"other"}' >/dev/null
ip_of() { jq -r '.ips[0].address' "$WORK/$1.json" | cut -d/ -f1; }
SERVERS=()
stop_servers() { for s in "${SERVERS[@]}"; do kill -KILL "$s" 2>/dev/null || true; done; }
on_exit stop_servers
# serve POD NAME [PORT]: libcolo's echo server in the pod, ready on return.
serve() {
  local pod=$1
  shift
  ip netns exec "cbk$TAG-$pod" "$COLO_BIN/echo_server" "$@" >"$WORK/server-$pod.log" 2>&1 &
  SERVERS+=($!)
  LAST_SERVER=$!
  for _ in $(seq 1 100); do grep -q listening "$WORK/server-$pod.log" && return 0; sleep 0.02; done
  return 1
}
client() { local pod=$1; shift; in_pod "$pod" "$COLO_BIN/echo_client" "$@" 2>&1; }

serve a echo 7100
check "a pod registers a name" grep -q "listening on colo name echo" "$WORK/server-a.log"
OUT=$(client b echo)
check "a pod on the node dials it by name and gets a Unix socket" grep -q "transport unix, peer default/pod-ctra" <<<"$OUT"
check "and upgrades it to a shared-memory channel" grep -q "then channel (memory memfd)" <<<"$OUT"
check "the echo works" grep -q "echo ok" <<<"$OUT"
check "the listener is told who called: pod b" grep -q "accepted unix from default/pod-ctrb" "$WORK/server-a.log"
check "the namespace-qualified name works too" grep -q "echo ok" <<<"$(client b default/echo)"

# --- identity cannot be spoofed ---
OUT=$(in_pod c python3 "$(dirname "$0")/spoof_dial.py" echo pod-ctrb)
check "a raw client claiming to be pod b still gets through" grep -q '"fds": 1' <<<"$OUT"
check "but the listener is told the truth: pod c" grep -q "accepted unix from default/pod-ctrc" "$WORK/server-a.log"
check "and never that it was pod b twice" test "$(grep -c 'accepted unix from default/pod-ctrb' "$WORK/server-a.log")" -eq 2

# --- policy ---
OUT=$(client d default/echo || true)
check "a pod in another namespace is denied by default" grep -q "permission denied" <<<"$OUT"
check "denials are counted" test "$(metric colo_broker_denials_total)" == 1
check "and logged" grep -q "broker: denied: pod other/pod-ctrd may not dial default/echo" "$WORK/agent.log"
serve f open
check "a listener that admits namespace 'other' lets pod d in" grep -q "echo ok" <<<"$(client d default/open)"
check "and pod b of its own namespace too" grep -q "echo ok" <<<"$(client b default/open)"
check "a name taken twice is refused" bash -c "! ip netns exec cbk$TAG-c $COLO_BIN/echo_server open >/dev/null 2>&1"

# --- TCP to anything not on this node, from the caller's own netns ---
OUT=$(client b "$(ip_of a):7100")
check "dial ip:port gives a TCP socket" grep -q "transport tcp, peer $(ip_of a):7100" <<<"$OUT"
check "and the echo works" grep -q "echo ok" <<<"$OUT"
check "the server saw pod b's own address as the source" grep -q "accepted tcp from $(ip_of b)" "$WORK/server-a.log"
check "a refused port is a clear error" grep -q "connection refused" <<<"$(client b "$(ip_of a):7999" || true)"
check "an unknown name is a clear error" grep -q "not found" <<<"$(client b nope || true)"

# --- names go with their listener, and with their pod ---
kill -KILL "$LAST_SERVER"
sleep 0.2
check "after the listener dies, a dial fails at once instead of hanging" bash -c "! ip netns exec cbk$TAG-b timeout 5 $COLO_BIN/echo_client default/open >/dev/null 2>&1"
check "the name is free again" serve f open
chain DEL "$CONF" ctra "$(ns a)" >/dev/null
check "when pod a goes away its name goes with it" grep -q "not found" <<<"$(client b echo || true)"
check "colo-node still serves pods" grep -q "echo ok" <<<"$(client b default/open)"

finish
