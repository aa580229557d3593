#!/usr/bin/env bash
# Dial by Kubernetes name, colo-node in Kubernetes mode against the fake kube-apiserver (Services
# and EndpointSlices watched), pods as network namespaces on a bridge: a ready backend on this
# node that serves colo name port/<targetPort> gets a Unix pair with identities; else a ready
# backend on this node gets TCP to its pod IP; else the ClusterIP; the reply says which and why,
# the same in C++, Go and Python; policy as for names for the Unix pair, with TCP after a refusal;
# pod/<ns>/<name>:<port> too.
source "$(dirname "$0")/kube_lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$(dirname "$COLO_BIN")}
export BUILD PYTHONDONTWRITEBYTECODE=1
bash "$ROOT/scripts/go.sh" build "$BUILD/bin/colo-go-echo" "$ROOT/clients/go/examples/echo"

in_cluster_api tok-1

BR=ckd$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/kd.conflist
write_conflist "$CONF" colo-kd "$BR" 198.18.14.0/24 closed false
ON='{"colo.dev/enabled":"true"}'
# The pods, in the API first (this node, their uid), then through the CNI chain onto the bridge.
api_pod_uid() {  # api_pod_uid ID NAMESPACE
  jq -nc --arg id "$1" --arg ns "$2" --arg node "$NODE" \
    '{metadata:{name:"pod-\($id)",namespace:$ns,uid:"uid-\($id)",annotations:{"colo.dev/enabled":"true"}},spec:{nodeName:$node}}' |
    { read -r body; fake POST /fake/pods "$body" >/dev/null; }
}
api_pod_uid ctra default
api_pod_uid ctrb default
api_pod_uid ctrc default
api_pod_uid ctrd default
api_pod_uid ctre other
start_agent --mode kubernetes --service-account-dir "$WORK/sa" --watch-timeout-seconds 5
ns() { echo "/var/run/netns/ckd$TAG-$1"; }
for p in a b c d e; do make_netns "ckd$TAG-$p"; done
for p in a b c d; do chain ADD "$CONF" "ctr$p" "$(ns "$p")" "$ON" >"$WORK/$p.json"; done
POD_NS=other chain ADD "$CONF" ctre "$(ns e)" "$ON" >/dev/null
ip_of() { jq -r '.ips[0].address' "$WORK/$1.json" | cut -d/ -f1; }

PIDS=()
stop_servers() { for s in "${PIDS[@]}"; do kill -KILL "$s" 2>/dev/null || true; done; }
on_exit stop_servers
serve() {  # serve POD NAME PORT: the Go echo server on colo name NAME and TCP PORT
  ip netns exec "ckd$TAG-$1" "$COLO_BIN/colo-go-echo" serve "$2" "$3" >"$WORK/server-$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 250); do grep -q listening "$WORK/server-$1.log" && return 0; sleep 0.02; done
  return 1
}
check "pod a serves its TCP port 8080 over colo too (listen port/8080)" serve a port/8080 8080
serve b plain 8080   # pod b serves 8080 over TCP only
serve d far 9090     # stands in for what a ClusterIP leads to

# Service web (port 80 "http" -> 8080) with backends a and b on this node and one elsewhere;
# Service far (port 9090) with its only backend elsewhere; its ClusterIP is pod d's address.
svc() {  # svc NAME CLUSTER_IP PORT TARGET
  fake POST /fake/services "$(jq -nc --arg n "$1" --arg ip "$2" --argjson p "$3" --argjson t "$4" \
    '{metadata:{name:$n,namespace:"default"},spec:{clusterIP:$ip,ports:[{name:"http",protocol:"TCP",port:$p,targetPort:$t}]}}')" >/dev/null
}
slice() {  # slice NAME SERVICE PORT ENDPOINTS_JSON
  fake POST /fake/endpointslices "$(jq -nc --arg n "$1" --arg s "$2" --argjson p "$3" --argjson e "$4" \
    '{metadata:{name:$n,namespace:"default",labels:{"kubernetes.io/service-name":$s}},addressType:"IPv4",ports:[{name:"http",protocol:"TCP",port:$p}],endpoints:$e}')" >/dev/null
}
ep() {  # ep ADDRESS NODE POD READY
  jq -nc --arg a "$1" --arg node "$2" --arg pod "$3" --argjson r "$4" \
    '{addresses:[$a],nodeName:$node,conditions:{ready:$r},targetRef:{kind:"Pod",namespace:"default",name:$pod}}'
}
svc web 198.18.14.200 80 8080
WEB_EPS="[$(ep "$(ip_of a)" "$NODE" pod-ctra true),$(ep "$(ip_of b)" "$NODE" pod-ctrb true),$(ep 198.18.14.250 other-node pod-x true)]"
slice web-1 web 8080 "$WEB_EPS"
svc far "$(ip_of d)" 9090 7000
slice far-1 far 7000 "[$(ep 198.18.14.251 other-node pod-y true)]"

dial() {  # dial LANG POD TARGET [ARGS...]
  local lang=$1 pod=$2
  shift 2
  case $lang in
    cpp) ip netns exec "ckd$TAG-$pod" "$COLO_BIN/echo_client" "$@" 2>&1 ;;
    go) ip netns exec "ckd$TAG-$pod" "$COLO_BIN/colo-go-echo" dial "$@" 2>&1 ;;
    py) ip netns exec "ckd$TAG-$pod" /usr/bin/python3 "$ROOT/clients/python/examples/echo.py" dial "$@" 2>&1 ;;
  esac
}
# The whole dial runs to its end (echo included): a dialer cut short by `grep -q` would leave
# half-made channel set-ups on the echo server while the checks below dial it.
routes_to() {
  local out
  out=$(dial go c "$1" || true)
  grep -q "^route $2" <<<"$out"
}
check "colo-node lists Services and EndpointSlices" wait_for 10 routes_to service/default/web:http unix

for lang in cpp go py; do
  OUT=$(dial "$lang" c service/default/web:http "$lang by service name" || true)
  check "$lang: service by port name: a Unix pair to the backend on this node serving port/8080" \
    grep -q "route unix: service default/web: ready backend default/pod-ctra is on this node and serves colo name port/8080" <<<"$OUT"
  check "$lang: with the backend's identity, and the echo works" grep -q "transport unix, peer default/pod-ctra" <<<"$OUT"
  check "$lang: echo ok" grep -q "echo ok: $lang by service name" <<<"$OUT"
done
check "the backend was told who called: pod c" grep -q "accepted unix from default/pod-ctrc" "$WORK/server-a.log"
check "service by port number: the same" grep -q "^route unix" <<<"$(dial go c service/default/web:80)"
check "pod by name and port: a Unix pair" grep -q "^route unix: pod default/pod-ctra is on this node and serves colo name port/8080" <<<"$(dial py c pod/default/pod-ctra:8080)"

# --- colo policy covers the Unix pair only: pod e of namespace other may not have pod a's colo
# port, so its dial goes on by TCP (NetworkPolicy's to decide, as without colo), saying why ---
for lang in cpp go py; do
  OUT=$(dial "$lang" e service/default/web:http "$lang from another namespace" || true)
  check "$lang: another namespace: the Unix pair refused by colo policy, TCP to a backend's pod IP instead" \
    grep -q "route pod-ip: service default/web: ready backend default/pod-ctra is on this node and serves colo name port/8080, but colo policy refused the Unix pair" <<<"$OUT"
  check "$lang: another namespace: the echo works over TCP" grep -q "echo ok: $lang from another namespace" <<<"$OUT"
done
check "pod by name from another namespace: TCP to its IP, saying why" \
  grep -q "^route pod-ip: pod default/pod-ctra is on this node and serves colo name port/8080, but colo policy refused" <<<"$(dial go e pod/default/pod-ctra:8080)"
check "a failed dial by Kubernetes name says its route in the error" \
  grep -q "refused.*(route pod-ip: pod default/pod-ctrb is on this node but does not serve colo name port/9999)" <<<"$(dial go c pod/default/pod-ctrb:9999 || true)"

# --- backend a not ready: TCP to the other ready backend on this node ---
slice web-1 web 8080 "[$(ep "$(ip_of a)" "$NODE" pod-ctra false),$(ep "$(ip_of b)" "$NODE" pod-ctrb true),$(ep 198.18.14.250 other-node pod-x true)]"
check "a backend no longer ready is passed over" wait_for 10 routes_to service/default/web:http pod-ip
for lang in cpp go py; do
  OUT=$(dial "$lang" c service/default/web:http "$lang to a pod ip" || true)
  check "$lang: TCP to the ready backend on this node, saying why" \
    grep -q "route pod-ip: service default/web: ready backend default/pod-ctrb is on this node but does not serve colo name port/8080" <<<"$OUT"
  check "$lang: from pod c's own address, and the echo works" grep -q "echo ok: $lang to a pod ip" <<<"$OUT"
done
check "pod b saw pod c's address" grep -q "accepted tcp from $(ip_of c)" "$WORK/server-b.log"
check "pod by name, no colo port: TCP to its IP" grep -q "^route pod-ip: pod default/pod-ctrb is on this node but does not serve" <<<"$(dial go c pod/default/pod-ctrb:8080)"

# --- no backend here: the ClusterIP ---
OUT=$(dial py c service/default/far:9090 "to the cluster ip" || true)
check "no backend on this node: TCP to the ClusterIP" grep -q "route cluster-ip: service default/far has no ready backend on this node" <<<"$OUT"
check "and the echo works" grep -q "echo ok: to the cluster ip" <<<"$OUT"

# --- clear errors ---
check "an unknown service is 'not found'" grep -q "not found.*no service default/nope" <<<"$(dial go c service/default/nope:80 || true)"
check "an unknown port name is 'not found'" grep -q "has no TCP port grpc" <<<"$(dial py c service/default/web:grpc || true)"
check "a malformed Kubernetes name is 'invalid argument'" grep -q "invalid argument" <<<"$(dial cpp c service/default/web:0 || true)"
check "listen port/0 is refused" bash -c "! ip netns exec ckd$TAG-c $COLO_BIN/colo-go-echo serve port/0 >/dev/null 2>&1"
fake DELETE /fake/services/default/far >/dev/null
check "a deleted Service is gone from colo-node's cache" wait_for 10 bash -c "ip netns exec ckd$TAG-c $COLO_BIN/colo-go-echo dial service/default/far:9090 2>&1 | grep -q 'no service default/far'"

finish
