#!/usr/bin/env bash
# bridge + host-local + colo-cni, invoked as a runtime does; colo-node restarted between ADD and
# DEL; colo-node down under both failure policies; CHECK, STATUS and GC.
source "$(dirname "$0")/lib.sh"

BR=cbr$TAG
BR=${BR:0:15}
make_bridge "$BR"
OPEN=$WORK/open.conflist
CLOSED=$WORK/closed.conflist
write_conflist "$OPEN" colo-it "$BR" 198.18.1.0/24 open false
write_conflist "$CLOSED" colo-it "$BR" 198.18.1.0/24 closed false
ON='{"colo.dev/enabled":"true"}'
OFF='{"colo.dev/enabled":"false"}'

start_agent
for p in a b c d e f g; do make_netns "cit$TAG-$p"; done
ns() { echo "/var/run/netns/cit$TAG-$1"; }

# --- ADD through the whole chain ---
chain ADD "$OPEN" ctra "$(ns a)" "$ON" >"$WORK/a.json"
chain ADD "$OPEN" ctrb "$(ns b)" "$ON" >"$WORK/b.json"
chain ADD "$OPEN" ctrc "$(ns c)" "$OFF" >"$WORK/c.json"
chain ADD "$OPEN" ctrd "$(ns d)" '{"other":"x"}' >"$WORK/d.json"
IP_A=$(jq -r '.ips[0].address' "$WORK/a.json")
IP_B=$(jq -r '.ips[0].address' "$WORK/b.json")
check "ADD result is bridge's result (address from host-local in 198.18.1.0/24)" \
  bash -c "[[ '$IP_A' == 198.18.1.*/24 && '$IP_B' == 198.18.1.*/24 ]]"
check "ADD result keeps bridge's interfaces" test "$(jq '.interfaces | length' "$WORK/a.json")" -eq 3
check "colo-node holds exactly the two opted-in pods" test "$(pod_keys)" == "uid-ctra uid-ctrb "
check "pods not opted in were reported and not held (standalone)" test "$(metric 'colo_cni_requests_total{verb="add",result="ok"}')" == 4
check "/debug/pods has pod a's address and identity" \
  test "$(agent_get /debug/pods | jq -r '.pods[] | select(.key=="uid-ctra") | "\(.ips[0]) \(.namespace)/\(.name) \(.containerID)"')" \
  == "$IP_A default/pod-ctra ctra"
check "colo_pods gauge is 2" test "$(metric colo_pods)" == 2
check "real traffic: pod a pings pod b over the bridge" \
  ip netns exec "cit$TAG-a" ping -c 2 -i 0.2 -W 1 "${IP_B%/*}"
check "no route out of a pod" bash -c "! ip -n cit$TAG-a route get 192.0.2.1 >/dev/null 2>&1"

# --- CHECK ---
check "CHECK of a held pod succeeds" chain CHECK "$OPEN" ctra "$(ns a)" "$ON"
check "CHECK with the wrong netns fails (closed policy)" fails chain CHECK "$CLOSED" ctra "$(ns b)" "$ON"

# --- restart between ADD and DEL ---
stop_agent
start_agent
check "restarted colo-node restores both pods" test "$(pod_keys)" == "uid-ctra uid-ctrb "
check "restarted colo-node answers CHECK" chain CHECK "$CLOSED" ctra "$(ns a)" "$ON"
check "DEL after restart" chain DEL "$OPEN" ctra "$(ns a)" "$ON"
check "DEL released pod a" test "$(pod_keys)" == "uid-ctrb "
check "DEL again succeeds" chain DEL "$OPEN" ctra "$(ns a)" "$ON"
check "containerd's second DEL (no netns, no prevResult) succeeds" \
  "$COLO_BIN/colo-chain" DEL --conflist "$OPEN" --id ctra --netns "" --no-prev --cni-path "$COLO_BIN:$REF_PLUGINS" --cache "$WORK/cache"
check "state file of pod a is gone" test ! -e "$WORK/state/pods/uid-ctra.json"

# --- a netns that vanishes while colo-node is down is released at start ---
chain ADD "$OPEN" ctrg "$(ns g)" "$ON" >/dev/null
stop_agent
ip netns del "cit$TAG-g"
start_agent
check "pod whose netns vanished while colo-node was down is released at start" test "$(pod_keys)" == "uid-ctrb "
check "and counted" test "$(metric colo_pods_released_stale_total)" == 1
chain DEL "$OPEN" ctrg "$(ns g)" "$ON" >/dev/null

# --- DEL when the netns is already gone ---
ip netns del "cit$TAG-b"
check "DEL after the netns vanished succeeds" chain DEL "$OPEN" ctrb "$(ns b)" "$ON"
check "and releases the pod" test "$(pod_keys)" == ""

# --- colo-node down ---
stop_agent
check "agent down, failurePolicy open: ADD succeeds" chain ADD "$OPEN" ctre "$(ns e)" "$ON"
check "agent down, failurePolicy open: logged" grep -q "continuing without colo (failurePolicy open)" "$WORK/colo-cni.log"
if out=$(chain ADD "$CLOSED" ctrf "$(ns f)" "$ON"); then
  fail "agent down, failurePolicy closed: ADD should fail"
else
  check "agent down, failurePolicy closed: code 11" test "$(jq .code <<<"$out")" -eq 11
  check "agent down, failurePolicy closed: details name the socket" grep -q "$WORK/run/cni/cni.sock" <<<"$(jq -r .details <<<"$out")"
fi
check "agent down: DEL succeeds (open)" chain DEL "$OPEN" ctre "$(ns e)" "$ON"
check "agent down: DEL succeeds (closed)" chain DEL "$CLOSED" ctrf "$(ns f)" "$ON"
for c in ctrc ctrd; do chain DEL "$OPEN" "$c" "$(ns ${c:3:1})" >/dev/null; done

# --- STATUS and GC (spec 1.1.0; no Debian runtime calls them, so call colo-cni directly) ---
V11='{"cniVersion":"1.1.0","name":"colo-it","type":"colo-cni","agentSocket":"'$WORK/run/cni/cni.sock'","failurePolicy":"closed","logFile":"'$WORK/colo-cni.log'"}'
out=$(cni_direct STATUS "$V11" || true)
check "STATUS with agent down (closed): code 50" test "$(jq .code <<<"$out")" -eq 50
check "STATUS with agent down (open): success" cni_direct STATUS "$(jq -c '.failurePolicy="open"' <<<"$V11")"
start_agent
check "STATUS with agent up: success" cni_direct STATUS "$V11"
ADD11=$(jq -c '.enableAll=true | .prevResult={"cniVersion":"1.1.0","ips":[{"address":"198.18.1.200/24"}]}' <<<"$V11")
for id in gc1 gc2; do
  make_netns "cit$TAG-$id"
  cni_direct ADD "$ADD11" CNI_CONTAINERID=$id CNI_NETNS="$(ns $id)" CNI_IFNAME=eth0 CNI_ARGS="K8S_POD_UID=uid-$id" >/dev/null
done
check "two pods added directly" test "$(pod_keys)" == "uid-gc1 uid-gc2 "
GC=$(jq -c '."cni.dev/valid-attachments"=[{"containerID":"gc1","ifname":"eth0"}]' <<<"$V11")
check "GC succeeds" cni_direct GC "$GC"
check "GC released only the attachment not listed" test "$(pod_keys)" == "uid-gc1 "

# --- a hung colo-node never holds up a pod, and late requests are not applied ---
kill -STOP "$AGENT_PID"
HUNG_OPEN=$(jq -c '.failurePolicy="open" | .timeoutMs=300' <<<"$ADD11")
T0=$(date +%s%N)
check "hung agent, failurePolicy open: ADD succeeds" cni_direct ADD "$HUNG_OPEN" CNI_CONTAINERID=hung1 CNI_NETNS="$(ns gc1)" CNI_IFNAME=eth0 CNI_ARGS="K8S_POD_UID=uid-hung1"
ELAPSED=$((($(date +%s%N) - T0) / 1000000))
check "within its 300 ms budget (took $ELAPSED ms)" test "$ELAPSED" -lt 1000
out=$(cni_direct ADD "$(jq -c '.timeoutMs=300' <<<"$ADD11")" CNI_CONTAINERID=hung2 CNI_NETNS="$(ns gc1)" CNI_IFNAME=eth0 CNI_ARGS="K8S_POD_UID=uid-hung2" || true)
check "hung agent, failurePolicy closed: code 11, saying it did not answer" grep -q "did not answer within 300 ms" <<<"$(jq -r .msg <<<"$out")"
# Fill the stopped agent's listen backlog: a blocking connect would now hang colo-cni.
python3 -c '
import socket, sys, time
held = []
for _ in range(1000):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.setblocking(False)
    try:
        s.connect(sys.argv[1])
    except BlockingIOError:
        break
    held.append(s)
print(len(held), flush=True)
time.sleep(3)
' "$WORK/run/cni/cni.sock" >"$WORK/backlog.txt" &
FILLER=$!
for _ in $(seq 1 100); do [[ -s $WORK/backlog.txt ]] && break; sleep 0.02; done
T0=$(date +%s%N)
check "backlog full ($(cat "$WORK/backlog.txt") held), failurePolicy open: ADD still succeeds" \
  cni_direct ADD "$HUNG_OPEN" CNI_CONTAINERID=hung3 CNI_NETNS="$(ns gc1)" CNI_IFNAME=eth0 CNI_ARGS="K8S_POD_UID=uid-hung3"
ELAPSED=$((($(date +%s%N) - T0) / 1000000))
check "at once (took $ELAPSED ms)" test "$ELAPSED" -lt 1000
check "and says why in its log" grep -q "backlog is full" "$WORK/colo-cni.log"
kill "$FILLER" 2>/dev/null || true
wait "$FILLER" 2>/dev/null || true
kill -CONT "$AGENT_PID"
sleep 0.5
check "the resumed agent did not apply the requests colo-cni gave up on" test "$(pod_keys)" == "uid-gc1 "
check "and counted them as late" test "$(metric 'colo_cni_requests_total{verb="add",result="late"}')" == 2

# --- a dual-stack pod: host-local hands out an IPv4 and an IPv6 address (2001:2::/48, no route out) ---
DUAL=$WORK/dual.conflist
write_conflist "$DUAL" colo-it6 "$BR" 198.18.21.0/24,2001:2:1::/64 closed false
for p in v1 v2; do make_netns "cit$TAG-$p"; done
chain ADD "$DUAL" ctrv1 "$(ns v1)" "$ON" >"$WORK/v1.json"
chain ADD "$DUAL" ctrv2 "$(ns v2)" "$ON" >"$WORK/v2.json"
V1_4=$(jq -r '.ips[] | select(.address | test(":") | not) | .address' "$WORK/v1.json")
V1_6=$(jq -r '.ips[] | select(.address | test(":")) | .address' "$WORK/v1.json")
V2_6=$(jq -r '.ips[] | select(.address | test(":")) | .address' "$WORK/v2.json")
check "dual-stack ADD: an IPv4 and an IPv6 address ($V1_4 $V1_6)" bash -c "[[ '$V1_4' == 198.18.21.*/24 && '$V1_6' == 2001:2:1::*/64 ]]"
pod_ips() { agent_get /debug/pods | jq -r --arg k "$1" '.pods[] | select(.key==$k) | .ips | join(" ")'; }
check "colo-node holds both addresses of the dual-stack pod" test "$(pod_ips uid-ctrv1)" == "$V1_4 $V1_6"
check "real IPv6 traffic: pod v1 pings pod v2 over the bridge" \
  ip netns exec "cit$TAG-v1" ping -6 -c 2 -i 0.2 -W 2 "${V2_6%/*}"
check "no IPv6 route out of a pod" bash -c "! ip -n cit$TAG-v1 -6 route get 2001:db8::1 >/dev/null 2>&1"
check "CHECK of the dual-stack pod succeeds" chain CHECK "$DUAL" ctrv1 "$(ns v1)" "$ON"
check "CHECK with the other pod's netns fails" fails chain CHECK "$DUAL" ctrv1 "$(ns v2)" "$ON"
stop_agent
start_agent
check "restarted colo-node restores both addresses" test "$(pod_ips uid-ctrv1)" == "$V1_4 $V1_6"
check "and answers CHECK" chain CHECK "$DUAL" ctrv1 "$(ns v1)" "$ON"
check "DEL of the dual-stack pods" chain DEL "$DUAL" ctrv1 "$(ns v1)" "$ON"
chain DEL "$DUAL" ctrv2 "$(ns v2)" "$ON" >/dev/null
check "and colo-node released it" test -z "$(pod_ips uid-ctrv1)"

# --- bad input from a runtime ---
out=$(cni_direct ADD "$ADD11" CNI_CONTAINERID=x1 CNI_NETNS=/etc/hostname CNI_IFNAME=eth0 || true)
check "a netns path that is not a netns: code 4 (closed)" test "$(jq .code <<<"$out")" -eq 4
out=$(cni_direct ADD "$ADD11" CNI_CONTAINERID=x1 CNI_NETNS=/proc/self/ns/net CNI_IFNAME=eth0 || true)
check "the host's own netns (hostNetwork) is refused (closed)" grep -q hostNetwork <<<"$(jq -r .msg <<<"$out")"
check "colo-node is still serving after bad input" test "$(agent_get /readyz | jq .ready)" == true

finish
