#!/usr/bin/env bash
# Service translation on the real kernel: colo-node in Kubernetes mode against the fake
# kube-apiserver (Services and EndpointSlices), its cgroup connect4/6 and getpeername4/6 programs
# attached to a cgroup of this test's own (the test moves itself into it), maps pinned in a
# private directory, pods as network namespaces on a bridge (dual stack). kube-proxy is emulated
# by an iptables DNAT rule in each client pod's netns sending the ClusterIP to pod r, which
# stands in for a backend on another node: a connection that colo does not translate reaches r,
# one it translates reaches a local backend without ever meeting the rule. Every server answers
# with its pod's name, so the reply says where a connection went.
source "$(dirname "$0")/kube_lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ECHO=$ROOT/test/integration/svc_echo.py

SERVERS=()
svc_cleanup() { for s in "${SERVERS[@]}"; do kill -KILL "$s" 2>/dev/null || true; done; }
on_exit svc_cleanup
bpf_sandbox colo-it

in_cluster_api tok-1

BR=cst$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/st.conflist
write_conflist "$CONF" colo-st "$BR" 198.18.31.0/24,2001:2:31::/64 closed false
ON='{"colo.dev/enabled":"true","colo.dev/splice":"true"}'
OFF='{"colo.dev/enabled":"false"}'
# a: client, opted in. b, c: backends, opted in. d: a backend on this node that did not opt in.
# r: stands in for a backend on another node. x: a client that did not opt in.
api_pod_uid() {  # api_pod_uid ID ANNOTATIONS
  jq -nc --arg id "$1" --argjson a "$2" --arg node "$NODE" \
    '{metadata:{name:"pod-\($id)",namespace:"default",uid:"uid-\($id)",annotations:$a},spec:{nodeName:$node}}' |
    { read -r body; fake POST /fake/pods "$body" >/dev/null; }
}
for p in a b c; do api_pod_uid "ctr$p" "$ON"; done
for p in d r x; do api_pod_uid "ctr$p" "$OFF"; done
start_agent --mode kubernetes --service-account-dir "$WORK/sa" --watch-timeout-seconds 5 --datapath on --cgroup-path "$CG" --bpf-pin-dir "$PIN"
STATUS=$(agent_get /readyz | jq -c .checks.serviceTranslation)
echo "service translation: $STATUS"
check "service translation is on, attached at the test's cgroup" test "$(jq -r .state <<<"$STATUS")" == on
check "connect4/6 and getpeername4/6 are attached there" \
  test "$(bpftool -j cgroup show "$CG" | jq -r '[.[] | select(.name | startswith("colo_svc")) | .attach_type] | sort | join(",")')" == \
  "cgroup_inet4_connect,cgroup_inet4_getpeername,cgroup_inet6_connect,cgroup_inet6_getpeername"

ns() { echo "/var/run/netns/cst$TAG-$1"; }
for p in a b c d r x; do make_netns "cst$TAG-$p"; done
for p in a b c; do chain ADD "$CONF" "ctr$p" "$(ns "$p")" "$ON" >"$WORK/$p.json"; done
for p in d r x; do chain ADD "$CONF" "ctr$p" "$(ns "$p")" "$OFF" >"$WORK/$p.json"; done
ip4() { jq -r '[.ips[] | select(.address | contains(".")) | .address][0]' "$WORK/$1.json" | cut -d/ -f1; }
ip6() { jq -r '[.ips[] | select(.address | contains(":")) | .address][0]' "$WORK/$1.json" | cut -d/ -f1; }
for p in b c d r; do
  ip netns exec "cst$TAG-$p" /usr/bin/python3 "$ECHO" serve "$p" 8080 300 >"$WORK/serve-$p.log" 2>&1 &
  SERVERS+=($!)
done
for p in b c d r; do wait_for 5 grep -q listening "$WORK/serve-$p.log" || fail "server in pod $p did not start"; done

VIP=198.19.31.10 VIP6=2001:2:31:ffff::10
# kube-proxy, emulated in the client pods: the ClusterIP (on-link, so routable) DNATed to pod r.
for p in a x; do
  ip -n "cst$TAG-$p" route add 198.19.31.0/24 dev eth0
  ip -n "cst$TAG-$p" -6 route add 2001:2:31:ffff::/64 dev eth0
  ip netns exec "cst$TAG-$p" iptables -t nat -A OUTPUT -d "$VIP" -p tcp --dport 80 -j DNAT --to-destination "$(ip4 r):8080"
  ip netns exec "cst$TAG-$p" ip6tables -t nat -A OUTPUT -d "$VIP6" -p tcp --dport 80 -j DNAT --to-destination "[$(ip6 r)]:8080"
done

# web: port 80 "http" -> 8080; asks for node-local traffic as $1 says.
service() {  # service SPEC_EXTRA_JSON ANNOTATIONS_JSON
  fake POST /fake/services "$(jq -nc --arg ip "$VIP" --arg ip6 "$VIP6" --argjson x "$1" --argjson a "$2" \
    '{metadata:{name:"web",namespace:"default",annotations:$a},spec:({clusterIP:$ip,clusterIPs:[$ip,$ip6],ipFamilies:["IPv4","IPv6"],
      ports:[{name:"http",protocol:"TCP",port:80,targetPort:8080}]} + $x)}')" >/dev/null
}
ep() {  # ep POD FAMILY NODE READY
  local addr
  addr=$([[ $2 == 6 ]] && ip6 "$1" || ip4 "$1")
  jq -nc --arg a "$addr" --arg node "$3" --arg pod "pod-ctr$1" --argjson r "$4" \
    '{addresses:[$a],nodeName:$node,conditions:{ready:$r},targetRef:{kind:"Pod",namespace:"default",name:$pod}}'
}
slices() {  # slices "POD:READY ..." : pod r is on another node, the others on this one
  local e4=() e6=() p ready node
  for spec in $1; do
    p=${spec%%:*} ready=${spec##*:} node=$NODE
    [[ $p == r ]] && node=other-node
    e4+=("$(ep "$p" 4 "$node" "$ready")")
    e6+=("$(ep "$p" 6 "$node" "$ready")")
  done
  for fam in 4 6; do
    local eps
    eps=$([[ $fam == 4 ]] && printf '%s\n' "${e4[@]}" | jq -sc . || printf '%s\n' "${e6[@]}" | jq -sc .)
    fake POST /fake/endpointslices "$(jq -nc --arg f "$fam" --argjson e "$eps" \
      '{metadata:{name:"web-v\($f)",namespace:"default",labels:{"kubernetes.io/service-name":"web"}},addressType:"IPv\($f)",
        ports:[{name:"http",protocol:"TCP",port:8080}],endpoints:$e}')" >/dev/null
  done
}
dial() { ip netns exec "cst$TAG-$1" /usr/bin/python3 "$ECHO" dial "$2" 80 "${3:-1}"; }
replies() { dial "$@" | sed -n 's/.*reply=//p' | sort | uniq -c | awk '{print $2"="$1}' | tr '\n' ' ' | sed 's/ $//'; }
backends() { agent_get /readyz | jq -r '.checks.serviceTranslation.services["default/web"] // 0'; }
backends_are() { [[ $(backends) == "$1" ]]; }
replies_are() { [[ $(replies a "$VIP" 4) == "$1" ]]; }

check "before any Service: a connect to the ClusterIP takes kube-proxy's path (pod r)" test "$(replies a "$VIP")" == "r=1"

# --- a Service asking for node-local traffic, one local ready opted-in backend ---
service '{}' '{"colo.dev/prefer-local":"true"}'
slices "b:true c:false d:true r:true"
check "colo-node translates default/web to its one local ready opted-in backend (v4 and v6)" wait_for 10 backends_are 2
T0=$(metric colo_service_translations_total)
OUT=$(dial a "$VIP" 10)
check "pod a's connects to the ClusterIP all reach pod b (local, ready, opted in)" test "$(sed -n 's/.*reply=//p' <<<"$OUT" | sort -u)" == b
check "getpeername shows the ClusterIP:port pod a dialled" test "$(sed -n 's/ reply.*//; s/peer=//p' <<<"$OUT" | sort -u)" == "$VIP:80"
check "colo_service_translations_total counted them" test "$(($(metric colo_service_translations_total) - ${T0:-0}))" -ge 10
check "colo_service_backends says 2 (v4 + v6)" test "$(metric 'colo_service_backends{namespace="default",service="web"}')" == 2
check "the log says when the Service became translated" grep -q "service translation: default/web translated to [12] local backend" "$WORK/agent.log"

OUT6=$(dial a "$VIP6" 3)
check "IPv6: the ClusterIP is translated to pod b's IPv6 address" test "$(sed -n 's/.*reply=//p' <<<"$OUT6" | sort -u)" == b
check "IPv6: getpeername shows [ClusterIP]:port" test "$(sed -n 's/ reply.*//; s/peer=//p' <<<"$OUT6" | sort -u)" == "[$VIP6]:80"

# UDP is never translated: the kernel's peer of a connected UDP socket (ss, not getpeername) stays
# the ClusterIP. A translated TCP connection's kernel peer is the backend (getpeername says otherwise).
ip netns exec "cst$TAG-a" /usr/bin/python3 "$ECHO" udp "$VIP" 80 >"$WORK/udp.log" &
UDP=$!
wait_for 3 grep -q connected "$WORK/udp.log" || true
check "UDP: a connected UDP socket to the ClusterIP keeps it as its peer" \
  grep -q "$VIP:80" <<<"$(ip netns exec "cst$TAG-a" ss -Hun state established)"
wait "$UDP" || true

N0=$(metric 'colo_service_translation_skipped_total{reason="not_caller"}')
check "pod x (not opted in) is not translated: kube-proxy's path (pod r)" test "$(replies x "$VIP" 3)" == "r=3"
check "pod x's connects were seen and left alone (not_caller)" test "$(($(metric 'colo_service_translation_skipped_total{reason="not_caller"}') - ${N0:-0}))" -ge 3

# --- the splice applies to the translated connection: pod to pod, both opted in. Over IPv6: the
# servers here listen dual-stack, and the splice keys an IPv4 peer of such a listener by its
# v4-mapped address, which is not in the pod map (docs/datapath.md) ---
S0=$(metric colo_datapath_sockets_inserted_total)
dial a "$VIP6" 1 >/dev/null
check "the translated connection's two sockets went into the sockhash" test "$(($(metric colo_datapath_sockets_inserted_total) - ${S0:-0}))" -ge 2

# --- two local ready backends: spread ---
slices "b:true c:true d:true r:true"
check "c ready: 4 backends (b and c, v4 and v6)" wait_for 10 backends_are 4
SPREAD=$(replies a "$VIP" 30)
check "connects spread over both local backends ($SPREAD)" bash -c "[[ '$SPREAD' == b=*' 'c=* ]]"

# --- a backend not ready: left out at once ---
slices "b:true c:false d:true r:true"
check "c not ready: back to 2 backends" wait_for 10 backends_are 2
check "every connect reaches b" test "$(replies a "$VIP" 10)" == "b=10"

# --- a backend pod going away mid-run (the API has not caught up: its slice still says ready) ---
slices "b:true c:true d:true r:true"
wait_for 10 backends_are 4 || true
dial a "$VIP" 400 >"$WORK/midrun.log" &
MIDRUN=$!
sleep 0.3
chain DEL "$CONF" ctrc "$(ns c)" "$ON" >/dev/null
check "pod c deleted: colo-node drops it from the frontends" wait_for 5 backends_are 2
AFTER=$(replies a "$VIP" 10)
wait "$MIDRUN" || true
check "after the DEL every connect reaches b ($AFTER)" test "$AFTER" == "b=10"
check "no connect during the DEL failed" bash -c "! grep -q error= '$WORK/midrun.log'"
check "the mid-run connects went to b and c before the DEL" test "$(sed -n 's/.*reply=//p' "$WORK/midrun.log" | sort -u | tr '\n' ' ')" == "b c "

# --- no local ready opted-in backend (d did not opt in, r is remote): left to kube-proxy ---
slices "b:false d:true r:true"
check "b not ready: default/web no longer translated" wait_for 10 backends_are 0
check "the log says so" grep -q "service translation: default/web no longer translated" "$WORK/agent.log"
check "the metric series is gone" test -z "$(metric 'colo_service_backends{namespace="default",service="web"}')"
check "connects take kube-proxy's path to pod r (never the not-opted-in local pod d)" test "$(replies a "$VIP" 4)" == "r=4"

# --- the Service losing its preference; the other ways of asking ---
slices "b:true d:true r:true"
check "b ready again: translated" wait_for 10 backends_are 2
check "connects reach b" test "$(replies a "$VIP" 4)" == "b=4"
service '{}' '{}'
check "the annotation removed: no longer translated" wait_for 10 backends_are 0
check "connects take kube-proxy's path again" test "$(replies a "$VIP" 4)" == "r=4"
service '{"internalTrafficPolicy":"Local"}' '{}'
check "internalTrafficPolicy: Local asks too" wait_for 10 replies_are "b=4"
service '{"trafficDistribution":"PreferSameNode"}' '{}'
check "trafficDistribution: PreferSameNode asks too" wait_for 10 replies_are "b=4"
service '{"trafficDistribution":"PreferClose"}' '{}'
check "trafficDistribution: PreferClose does not" wait_for 10 replies_are "r=4"
service '{"internalTrafficPolicy":"Local"}' '{}'
wait_for 10 backends_are 2 || true
fake DELETE /fake/services/default/web >/dev/null
check "the Service deleted: no longer translated" wait_for 10 backends_are 0
check "connects take kube-proxy's path" test "$(replies a "$VIP" 4)" == "r=4"

# --- a restart keeps getpeername answering for connections made before it ---
service '{"internalTrafficPolicy":"Local"}' '{}'
wait_for 10 backends_are 2 || true
check "before the stop, connects reach b" test "$(replies a "$VIP" 4)" == "b=4"
stop_agent
# Nobody keeps the frontends true while colo-node is down: connect4/6 go with its process.
check "colo-node stopped (SIGTERM): connects to the ClusterIP take kube-proxy's path" test "$(replies a "$VIP" 4)" == "r=4"
check "connect4/6 are detached, getpeername4/6 stay (pinned)" \
  test "$(bpftool -j cgroup show "$CG" | jq -c '[.[] | .name | select(startswith("colo_svc"))] | sort')" == '["colo_svc_getpeername4","colo_svc_getpeername6"]'
start_agent --mode kubernetes --service-account-dir "$WORK/sa" --watch-timeout-seconds 5 --datapath on --cgroup-path "$CG" --bpf-pin-dir "$PIN"
check "after a restart colo-node translates again (pinned links reused, map refilled)" wait_for 10 backends_are 2
check "and connects reach b again" test "$(replies a "$VIP" 4)" == "b=4"
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=""
check "colo-node killed (SIGKILL): connects to the ClusterIP take kube-proxy's path" test "$(replies a "$VIP" 4)" == "r=4"
start_agent --mode kubernetes --service-account-dir "$WORK/sa" --watch-timeout-seconds 5 --datapath on --cgroup-path "$CG" --bpf-pin-dir "$PIN"
check "after SIGKILL and a restart colo-node translates again" wait_for 10 backends_are 2
check "and connects reach b" test "$(replies a "$VIP" 4)" == "b=4"
check "the links were updated in place, not attached twice" \
  test "$(bpftool -j cgroup show "$CG" | jq '[.[] | select(.name == "colo_svc_connect4")] | length')" == 1

finish
