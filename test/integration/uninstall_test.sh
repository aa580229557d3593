#!/usr/bin/env bash
# The node's colo pod as the chart runs it (colo-node + the cni-chain sidecar) against the fake
# kube-apiserver: whether colo-cni is chained shows in /readyz, a metric and Events on the colo
# pod; a rollout keeps the chain and the binary, and a pod starting while colo-node restarts
# starts; `helm uninstall` leaves the node clean although Helm deletes the DaemonSet and the RBAC
# in the same instant (the pre-delete hook `colo-node mark-uninstall` decides it beforehand);
# without the hook a colo-node that gets 403 keeps everything rather than half-uninstalling.
# And /debug/pods stays off node addresses unless the operator exposes it.
source "$(dirname "$0")/kube_lib.sh"

make_test_pki
mkdir -p "$WORK/sa" "$WORK/hook-sa"
cp "$PKI/ca.crt" "$WORK/sa/ca.crt"
cp "$PKI/ca.crt" "$WORK/hook-sa/ca.crt"
echo -n agent-tok >"$WORK/sa/token"
echo -n hook-tok >"$WORK/hook-sa/token"
start_fake_api --token agent-tok --token hook-tok
export KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$FAKE_PORT
NS=kube-system
CONF=$WORK/cni/net.d
CNIBIN=$WORK/cni/bin
STATUS=$WORK/run/cni-chain.json
mkdir -p "$CONF" "$CNIBIN"
cp "$COLO_FIXTURES/cni-confs/kindnet.conflist" "$CONF/10-kindnet.conflist"
cp "$CONF/10-kindnet.conflist" "$WORK/kindnet.orig"

# colo_pod NAME NODE: the DaemonSet's pod in the API; prints its uid.
colo_pod() {
  fake POST /fake/pods "$(jq -nc --arg n "$1" --arg node "$2" --arg ns "$NS" \
    '{metadata:{name:$n,namespace:$ns,labels:{"app.kubernetes.io/name":"colo","app.kubernetes.io/instance":"colo"}},
      spec:{nodeName:$node,hostNetwork:true,containers:[{name:"colo-node",image:"colo"}]},status:{phase:"Running"}}')" | jq -r .metadata.uid
}
SIDECAR=""
# start_node POD UID: colo-node and the cni-chain sidecar, as the DaemonSet's pod runs them.
start_node() {
  start_agent --mode kubernetes --service-account-dir "$WORK/sa" --watch-timeout-seconds 5 --daemon-set-name colo \
    --pod-namespace "$NS" --pod-name "$1" --pod-uid "$2" --cni-chain-status-file "$STATUS" "${@:3}"
  "$COLO_BIN/colo-cni-installer" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$CNIBIN" --conf-dir "$CONF" \
    --status-file "$STATUS" --watch --decision-file "$WORK/run/shutdown" >>"$WORK/sidecar.log" 2>&1 &
  SIDECAR=$!
}
stop_node() {
  kill -TERM "$AGENT_PID" "$SIDECAR" 2>/dev/null || true
  wait "$AGENT_PID" "$SIDECAR" 2>/dev/null || true
  AGENT_PID="" SIDECAR=""
}
stop_sidecar() { [[ -z $SIDECAR ]] || kill -TERM "$SIDECAR" 2>/dev/null || true; }
on_exit stop_sidecar
ready() { curl -sf --max-time 2 "http://$AGENT_HTTP/readyz" >/dev/null; }
not_ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$AGENT_HTTP/readyz") == 503 ]]; }
api() { curl -sS --max-time 10 --cacert "$PKI/ca.crt" -H "Authorization: Bearer agent-tok" "$FAKE_URL$1"; }
has_event() { [[ ,$(api "/api/v1/namespaces/$NS/events?fieldSelector=involvedObject.name=$1" | jq -r '[.items[].reason] | join(",")'), == *,$2,* ]]; }
chained_file() { grep -q colo-cni "$CONF/10-kindnet.conflist"; }

fake POST /fake/daemonsets '{"metadata":{"name":"colo","namespace":"kube-system"}}' >/dev/null
POD1=colo-aaaaa
UID1=$(colo_pod $POD1 "$NODE")
start_node $POD1 "$UID1"

# --- chained or not: /readyz, the metric, Events on the colo pod ---
check "colo-node is ready once colo-cni is chained" wait_for 5 ready
readyz_has() { curl -s --max-time 2 "http://$AGENT_HTTP/readyz" | jq -e "$@" >/dev/null; }
check "/readyz says where colo-cni is chained" readyz_has --arg f "$CONF/10-kindnet.conflist" '.checks.cniChain.chained and .checks.cniChain.file == $f'
check "colo_cni_chained is 1" test "$(metric colo_cni_chained)" == 1
check "an Event ColoChained on the colo pod" wait_for 5 has_event $POD1 ColoChained
# The primary rewrites its file with a cniVersion colo-cni cannot speak: not chained, and said so.
jq '.cniVersion = "0.2.0"' "$WORK/kindnet.orig" >"$CONF/.new" && mv "$CONF/.new" "$CONF/10-kindnet.conflist"
check "a 0.2.0 primary: colo-node is not ready" wait_for 5 not_ready
check "... /readyz says why" readyz_has '.ready == false and (.checks.cniChain.message | test("0.2.0"))'
check "... colo_cni_chained is 0" test "$(metric colo_cni_chained)" == 0
check "... a Warning ColoNotChained on the colo pod" wait_for 5 has_event $POD1 ColoNotChained
cp "$WORK/kindnet.orig" "$CONF/.new" && mv "$CONF/.new" "$CONF/10-kindnet.conflist"
check "the primary fixed: chained and ready again" wait_for 5 ready
# The sidecar dies (SIGKILL, OOM) and the primary rewrites its file: its last report says chained,
# but colo-node checks the file itself.
start_sidecar() {
  "$COLO_BIN/colo-cni-installer" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$CNIBIN" --conf-dir "$CONF" \
    --status-file "$STATUS" --watch --decision-file "$WORK/run/shutdown" >>"$WORK/sidecar.log" 2>&1 &
  SIDECAR=$!
}
kill -KILL "$SIDECAR"
wait "$SIDECAR" 2>/dev/null || true
cp "$WORK/kindnet.orig" "$CONF/.new" && mv "$CONF/.new" "$CONF/10-kindnet.conflist"
check "sidecar dead, primary rewritten without colo-cni: not ready although the last report says chained" wait_for 5 not_ready
check "... colo_cni_chained is 0, and /readyz says why" \
  bash -c "[[ \$(curl -s http://$AGENT_HTTP/metrics | awk '\$1 == \"colo_cni_chained\" {print \$2}') == 0 ]] && curl -s http://$AGENT_HTTP/readyz | jq -e '.checks.cniChain.message | test(\"no longer in\")' >/dev/null"
rewrite_earlier() { cp "$COLO_FIXTURES/cni-confs/calico.conflist" "$CONF/.new" && mv "$CONF/.new" "$CONF/05-calico.conflist"; }
start_sidecar
check "the sidecar back: chained and ready" wait_for 5 ready
kill -KILL "$SIDECAR"
wait "$SIDECAR" 2>/dev/null || true
rewrite_earlier
check "sidecar dead, an earlier file appears: not ready (runtimes load the other file)" wait_for 5 not_ready
rm "$CONF/05-calico.conflist"
start_sidecar
check "... the sidecar back: ready again" wait_for 5 ready

# --- a rollout keeps datapath, chain and binary, and no pod is refused meanwhile ---
make_netns "kt$TAG-web"
WEB_UID=$(api_pod web '{"colo.dev/enabled":"true"}')
cni_pod ADD web "$WEB_UID" 198.18.14.10 '{"colo.dev/enabled":"true"}' >/dev/null
check "a pod opted in before the rollout has its endpoint" field_is web active true
stop_node
check "rollout (DaemonSet still there): colo-node says keep" grep -qx keep "$WORK/run/shutdown"
check "... colo-cni stays chained and the binary stays" bash -c "grep -q colo-cni '$CONF/10-kindnet.conflist' && test -x '$CNIBIN/colo-cni'"
make_netns "kt$TAG-late"
LATE_UID=$(api_pod late '{"colo.dev/enabled":"true"}')
check "... a pod starting while colo-node is down still starts (failurePolicy open)" \
  bash -c "$(declare -f cni_pod cni_direct); WORK=$WORK TAG=$TAG COLO_BIN=$COLO_BIN; cni_pod ADD late $LATE_UID 198.18.14.11 '{\"colo.dev/enabled\":\"true\"}' >/dev/null"
POD2=colo-bbbbb
UID2=$(colo_pod $POD2 "$NODE")
fake DELETE /fake/pods/$NS/$POD1 >/dev/null
start_node $POD2 "$UID2"
check "the new colo-node is ready" wait_for 5 ready
check "... and restored the pod" field_is web active true

# --- helm uninstall that stopped after its hook (the DaemonSet stays): the mark does not stick ---
"$COLO_BIN/colo-node" mark-uninstall --service-account-dir "$WORK/hook-sa" --pod-namespace "$NS" \
  --hook-selector app.kubernetes.io/instance=colo --hook-timeout-seconds 3 >"$WORK/hook.log" 2>&1
check "an interrupted helm uninstall: the hook marked the pod" wait_for 5 has_event $POD2 ColoUninstallAcknowledged
stop_node
check "... a later rollout (DaemonSet still there, not being deleted) keeps colo" grep -qx keep "$WORK/run/shutdown"
check "... says the mark was ignored" grep -q "mark ignored, keeping pods, datapath and chain" "$WORK/agent.log"
check "... chain, binary and pod state kept" bash -c "grep -q colo-cni '$CONF/10-kindnet.conflist' && test -x '$CNIBIN/colo-cni' && test -d '$WORK/state'"
start_node $POD2 "$UID2"
check "a container restart on the marked pod: ready" wait_for 5 ready
stop_node
check "... and its stop keeps colo too" bash -c "grep -qx keep '$WORK/run/shutdown' && grep -q colo-cni '$CONF/10-kindnet.conflist' && test -x '$CNIBIN/colo-cni'"
POD2B=colo-bbbbc
UID2B=$(colo_pod $POD2B "$NODE")
fake DELETE /fake/pods/$NS/$POD2 >/dev/null
POD2=$POD2B
start_node $POD2 "$UID2B"
check "the next colo-node (an unmarked pod) is ready" wait_for 5 ready
check "... and restored the pod" field_is web active true

# --- Helm deletes the DaemonSet and the RBAC at once, without the hook: colo keeps the node working ---
fake DELETE "/fake/daemonsets/$NS/colo?rbac=1" >/dev/null
stop_node
check "without the hook, a colo-node refused by the API (403) keeps everything" grep -qx keep "$WORK/run/shutdown"
check "... and says why" grep -q "cannot tell whether DaemonSet kube-system/colo is gone (.*403" "$WORK/agent.log"
check "... the chain and the binary are intact (pods still start)" bash -c "grep -q colo-cni '$CONF/10-kindnet.conflist' && test -x '$CNIBIN/colo-cni'"

# --- helm uninstall: the pre-delete hook marks every colo pod while RBAC exists ---
fake POST /fake/faults '{"forbidden":null}' >/dev/null
fake POST /fake/daemonsets '{"metadata":{"name":"colo","namespace":"kube-system"}}' >/dev/null
POD3=colo-ccccc
UID3=$(colo_pod $POD3 "$NODE")
colo_pod colo-zzzzz other-node >/dev/null  # another node's colo pod, whose colo-node never answers here
fake DELETE /fake/pods/$NS/$POD2 >/dev/null
# colo 0.1.0's shared pin dir, left on the node (no upgraded colo-node took it over: datapath off).
LEGACY=/sys/fs/bpf/colo-itl-$TAG
legacy_cleanup() { "$COLO_BIN/colo-node" uninstall --bpf-pin-dir "$LEGACY" >/dev/null 2>&1 || true; }
on_exit legacy_cleanup
mkdir -p "$LEGACY"
bpftool map create "$LEGACY/colo_socks" type hash key 4 value 4 entries 1 name colo_socks
start_node $POD3 "$UID3" --legacy-bpf-pin-dir "$LEGACY"
wait_for 5 ready
"$COLO_BIN/colo-node" mark-uninstall --service-account-dir "$WORK/hook-sa" --pod-namespace "$NS" \
  --hook-selector app.kubernetes.io/instance=colo --hook-timeout-seconds 3 >"$WORK/hook.log" 2>&1 && RC=0 || RC=$?
check "the hook marks the colo pods and returns 0" test "$RC" -eq 0
check "... this node's colo-node acknowledged (Event ColoUninstallAcknowledged)" has_event $POD3 ColoUninstallAcknowledged
check "... the hook saw it" grep -q "colo-node of pod $POD3 acknowledged" "$WORK/hook.log"
check "... and names the pod that did not answer in time" grep -q "pod kube-system/colo-zzzzz did not acknowledge within 3 s" "$WORK/hook.log"
check "/readyz shows the mark" readyz_has '.checks.uninstall | test("marked")'
marked_in_api() { api "/api/v1/namespaces/$NS/pods/$POD3" | jq -e '.metadata.annotations["colo.dev/uninstall"] == "true"' >/dev/null; }
check "the pod carries colo.dev/uninstall=true" marked_in_api
# The hook ran but the uninstall went no further (the DaemonSet is still there): a restart keeps colo.
stop_node
check "marked, but the DaemonSet is still there (an aborted uninstall): keep" grep -qx keep "$WORK/run/shutdown"
check "... the chain and the binary stay" bash -c "grep -q colo-cni '$CONF/10-kindnet.conflist' && test -x '$CNIBIN/colo-cni'"
start_node $POD3 "$UID3" --legacy-bpf-pin-dir "$LEGACY"
check "a restarted colo-node finds the mark in its first list of the API" wait_for 5 readyz_has '.checks.uninstall | test("marked")'
fake DELETE "/fake/daemonsets/$NS/colo?rbac=1" >/dev/null  # Helm: DaemonSet, ServiceAccount, Role, RoleBinding, at once
stop_node
check "uninstall: colo-node decided from the mark, not from the API (which now says 403)" grep -q "marked for uninstall by the pre-delete hook" "$WORK/agent.log"
check "... pods released, endpoints and state removed" bash -c "[[ ! -e $WORK/state && -z \$(ls -A $WORK/run/pods) ]]"
check "... the sidecar took colo-cni out of the chain, byte for byte" cmp "$CONF/10-kindnet.conflist" "$WORK/kindnet.orig"
check "... colo 0.1.0's pin dir is unpinned too" test ! -e "$LEGACY"
check "... no file names colo-cni, and the binary is gone" bash -c "! grep -rlq colo-cni '$CONF' && test ! -e '$CNIBIN/colo-cni'"

# --- /debug/pods is never served on a node address unless asked (the ServiceMonitor needs one) ---
DBG=cdbg$TAG
DBG=${DBG:0:15}
ip link add "$DBG" type veth peer name "${DBG}p"  # both ends here: an address of this host that is not loopback
track_link "$DBG"
ip addr add 198.18.15.1/32 dev "$DBG"
ip link set "$DBG" up
start_agent --http-address 198.18.15.1:0
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$AGENT_HTTP$1"; }
check "on a node address /metrics is served" test "$(code /metrics)" == 200
check "... /debug/pods is not (403) by default" test "$(code /debug/pods)" == 403
stop_agent
start_agent --http-address 198.18.15.1:0 --expose-debug-pods true
check "... unless exposeDebugPods is true" test "$(code /debug/pods)" == 200
finish
