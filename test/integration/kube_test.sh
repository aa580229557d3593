#!/usr/bin/env bash
# colo-node in Kubernetes mode against the fake kube-apiserver: opt-in decided from the API when
# the runtime passes no annotations, toggled on a running pod, Events, pods deleted in the API,
# 410 (as an ERROR event and as an HTTP status), a dropped and a silent watch, the API gone and
# back with changes made meanwhile, an API server restart, token rotation, and paging.
source "$(dirname "$0")/kube_lib.sh"

in_cluster_api tok-1
KUBE_FLAGS=(--mode kubernetes --service-account-dir "$WORK/sa" --watch-timeout-seconds 3 --list-page-size 2 --hugepages-budget 32Mi)

# Pods a..e on this node (netns kt$TAG-x, addresses 198.18.12.x), others elsewhere.
declare -A UID_OF IP_OF
i=10
for p in a b c d e; do
  make_netns "kt$TAG-$p"
  IP_OF[$p]=198.18.12.$i
  i=$((i + 1))
done
UID_OF[a]=$(api_pod a '{"colo.dev/enabled":"true"}')
UID_OF[b]=$(api_pod b '{}')
UID_OF[c]=$(api_pod c '{"colo.dev/enabled":"true","colo.dev/hugepages":"64Mi"}')
for n in 1 2 3; do api_pod "other-$n" '{"colo.dev/enabled":"true"}' other-node >/dev/null; done

start_agent "${KUBE_FLAGS[@]}"
kube_synced() { [[ $(agent_get /readyz | jq -r .checks.kubernetes.synced) == true ]]; }
check "colo-node lists and watches the API (in-cluster config)" wait_for 5 kube_synced
check "it knows only this node's 3 pods (field selector)" test "$(agent_get /readyz | jq -r .checks.kubernetes.pods)" == 3
check "the list was paged (limit 2: two pages)" test "$(fake GET /fake/stats | jq .lists)" -ge 2

# --- opt-in from the API when the runtime passes no annotations ---
check "ADD without annotations: the API says pod a opted in" cni_pod ADD a "${UID_OF[a]}" "${IP_OF[a]}" -
check "pod a is active with an endpoint" field_is a active true
check "pod a answers hello over @colo" bash -c "ip netns exec kt$TAG-a $COLO_BIN/coloctl hello | jq -e '.identity.name == \"a\"' >/dev/null"
check "pod a carries its service account from the API" field_is a serviceAccount sa-a
check "the lookup was counted" test "$(metric 'colo_cni_api_lookups_total{result="found"}')" == 1

# --- a pod not opted in is held dormant and turned on and off while it runs ---
cni_pod ADD b "${UID_OF[b]}" "${IP_OF[b]}" '{}' >/dev/null
check "pod b is held dormant" field_is b active false
check "pod b has no @colo" bash -c "! ip netns exec kt$TAG-b $COLO_BIN/coloctl hello >/dev/null 2>&1"
annotate b '{"colo.dev/enabled":"true"}'
check "annotating pod b turns colo on without restarting it" wait_for 5 field_is b active true
check "pod b answers hello now" bash -c "ip netns exec kt$TAG-b $COLO_BIN/coloctl hello >/dev/null"
annotate b '{"colo.dev/enabled":null}'
check "removing the annotation turns colo off" wait_for 5 field_is b active false
check "pod b's endpoint is gone" bash -c "! ip netns exec kt$TAG-b $COLO_BIN/coloctl hello >/dev/null 2>&1 && [[ ! -e $WORK/run/pods/${UID_OF[b]} ]]"
events() { fake GET /fake/events | jq -r --arg n "$1" '[.[] | select(.involvedObject.name==$n) | .reason] | join(",")'; }
has_event() { [[ ,$(events "$1"), == *,$2,* ]]; }
check "Events ColoEnabled and ColoDisabled on pod b" wait_for 5 bash -c "$(declare -f fake events has_event); FAKE_URL=$FAKE_URL PKI=$PKI; has_event b ColoEnabled && has_event b ColoDisabled"

# --- what a user must see: hugepages refused, datapath off ---
cni_pod ADD c "${UID_OF[c]}" "${IP_OF[c]}" '{"colo.dev/enabled":"true","colo.dev/hugepages":"64Mi"}' >/dev/null
check "pod c starts (failurePolicy open) without hugepages" field_is c active true
check "a HugepagesRefused Warning on pod c" wait_for 5 bash -c "$(declare -f fake events has_event); FAKE_URL=$FAKE_URL PKI=$PKI; has_event c HugepagesRefused"
check "a DatapathOff Warning on pod c" wait_for 5 bash -c "$(declare -f fake events has_event); FAKE_URL=$FAKE_URL PKI=$PKI; has_event c DatapathOff"
check "the Events are core/v1 Events naming the pod's uid" \
  test "$(fake GET /fake/events | jq -r --arg u "${UID_OF[c]}" '[.[] | select(.involvedObject.uid==$u and .type=="Warning")] | length')" -ge 2

# --- deleted in the API, no DEL ever came ---
fake DELETE /fake/pods/default/c >/dev/null
check "a pod deleted in the API is released without its DEL" wait_for 5 field_is c active absent
check "the late DEL finds nothing to undo and succeeds" cni_pod DEL c "${UID_OF[c]}" "${IP_OF[c]}" '{}'

# --- 410 in the middle of a watch, as an ERROR event ---
lists() { metric "colo_kube_lists_total{reason=\"$1\"}"; }
fake POST /fake/faults '{"watchEnd":"expire"}' >/dev/null
check "ERROR 410 mid-watch leads to a relist" wait_for 5 bash -c "[[ \$(curl -sf http://$AGENT_HTTP/metrics | awk '\$1==\"colo_kube_lists_total{reason=\\\"expired\\\"}\" {print \$2}') -ge 1 ]]"
annotate b '{"colo.dev/enabled":"true"}'
check "changes after the relist still apply" wait_for 5 field_is b active true

# --- 410 as the HTTP status of the watch request ---
before=$(lists expired)
fake POST /fake/compact '{}' >/dev/null
fake POST /fake/faults '{"watch410Http":1,"watchEnd":"drop"}' >/dev/null
check "a dropped watch reconnects; HTTP 410 leads to a relist" wait_for 8 bash -c "[[ \$(curl -sf http://$AGENT_HTTP/metrics | awk '\$1==\"colo_kube_lists_total{reason=\\\"expired\\\"}\" {print \$2}') -gt $before ]]"
check "a watch cut mid-event was counted as dropped" test "$(metric 'colo_kube_watch_ends_total{how="dropped"}')" -ge 1
annotate b '{"colo.dev/enabled":"false"}'
check "and the watch follows changes again" wait_for 5 field_is b active false

# --- a silent watch is restarted ---
fake POST /fake/faults '{"silent":true}' >/dev/null
check "a watch silent past its timeout (3 s + 5 s) is restarted" \
  wait_for 12 bash -c "[[ -n \$(curl -sf http://$AGENT_HTTP/metrics | awk '\$1==\"colo_kube_watch_ends_total{how=\\\"silent\\\"}\" {print \$2}') ]]"
fake POST /fake/faults '{"silent":null}' >/dev/null
annotate b '{"colo.dev/enabled":"true"}'
check "the restarted watch follows changes" wait_for 5 field_is b active true

# --- the API gone for a while, with changes made meanwhile ---
UID_OF[d]=$(api_pod d '{}')
cni_pod ADD d "${UID_OF[d]}" "${IP_OF[d]}" '{}' >/dev/null
fake POST /fake/faults '{"down":true}' >/dev/null
sleep 1
annotate d '{"colo.dev/enabled":"true"}'   # turned on while the agent cannot see it
annotate b '{"colo.dev/enabled":"false"}'  # turned off
fake DELETE /fake/pods/default/a >/dev/null  # gone, and its DEL will never come
UID_OF[e]=$(api_pod e '{"colo.dev/enabled":"true"}')
# A new pod starts while the API is away: colo-cni passes no annotations, the lookup fails in
# time, the pod starts dormant and is turned on when the API is back.
check "ADD while the API is down still succeeds in time" timeout 2 bash -c "$(declare -f cni_pod cni_direct); WORK=$WORK TAG=$TAG COLO_BIN=$COLO_BIN; cni_pod ADD e ${UID_OF[e]} ${IP_OF[e]} - >/dev/null"
check "pod e is held dormant meanwhile" field_is e active false
sleep 2
T0=$(date +%s%N)
fake POST /fake/faults '{"down":false}' >/dev/null
converged() {
  field_is d active true && field_is b active false && field_is a active absent && field_is e active true
}
check "after the API returns, colo converges within 5 s" wait_for 5 converged
echo "converged in $((($(date +%s%N) - T0) / 1000000)) ms"
check "no pod missed or held twice" test "$(agent_get /debug/pods | jq -r '[.pods[].name] | sort | join(",")')" == "b,d,e"

# --- the API server restarts (its watch history is gone: 410, relist) ---
stop_fake_api
annotate_offline() { jq --arg n "$1" '(.pods[] | select(.metadata.name==$n) | .metadata.annotations) |= {"colo.dev/enabled":"false"} | .rv += 1' \
  "$WORK/fake-state.json" >"$WORK/fake-state.tmp" && mv "$WORK/fake-state.tmp" "$WORK/fake-state.json"; }
annotate_offline d  # changed in "etcd" while the API server was down
start_fake_api --token tok-1
export KUBERNETES_SERVICE_PORT=$FAKE_PORT
stop_agent  # the port moved; a restarted agent also proves the persisted dormant state
start_agent "${KUBE_FLAGS[@]}"
check "restarted agent and API server converge" wait_for 5 field_is d active false
check "restarted agent restores pods held dormant and active" bash -c "[[ \$(curl -sf http://$AGENT_HTTP/debug/pods | jq -r '[.pods[] | \"\(.name)=\(.active)\"] | sort | join(\",\")') == b=false,d=false,e=true ]]"

# --- token rotation: the old token is revoked, the new one read from the file ---
echo -n tok-2 >"$WORK/sa/token.new" && mv "$WORK/sa/token.new" "$WORK/sa/token"
fake POST /fake/tokens '{"tokens":["tok-2"]}' >/dev/null
fake POST /fake/faults '{"watchEnd":"drop"}' >/dev/null
annotate b '{"colo.dev/enabled":"true"}'
check "after rotation the agent uses the new token and follows changes" wait_for 8 field_is b active true
# Three streams see the revocation (the watches of pods, Services and EndpointSlices).
check "at most a couple of 401s per stream on the way" test "$(fake GET /fake/stats | jq .unauthorized)" -le 6

# --- SIGTERM: a rolling update keeps everything; an uninstall (DaemonSet gone) removes it all ---
fake POST /fake/daemonsets '{"metadata":{"name":"colo","namespace":"kube-system"}}' >/dev/null
mkdir -p "$WORK/cni/net.d" "$WORK/cni/bin"
echo '{"cniVersion":"1.0.0","name":"kindnet","plugins":[{"type":"ptp"},{"type":"portmap","capabilities":{"portMappings":true}}]}' >"$WORK/cni/net.d/10-kindnet.conflist"
cp "$WORK/cni/net.d/10-kindnet.conflist" "$WORK/kindnet.orig"
sidecar() {
  "$COLO_BIN/colo-cni-installer" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$WORK/cni/bin" --conf-dir "$WORK/cni/net.d" \
    --watch --decision-file "$WORK/run/shutdown" >>"$WORK/sidecar.log" 2>&1 &
  SIDECAR=$!
  wait_for 5 grep -q colo-cni "$WORK/cni/net.d/10-kindnet.conflist"
}
stop_node() {
  kill -TERM "$AGENT_PID" "$SIDECAR"
  wait "$AGENT_PID" "$SIDECAR" || true
  AGENT_PID=""
}
stop_agent
start_agent "${KUBE_FLAGS[@]}" --daemon-set-name colo --pod-namespace kube-system
sidecar
stop_node
check "rolling update (DaemonSet still there): colo-node says keep" grep -qx keep "$WORK/run/shutdown"
check "... the pods' state stays for the next colo-node" test "$(find "$WORK/state/pods" -name '*.json' | wc -l)" -eq 3
check "... and colo-cni stays chained" grep -q colo-cni "$WORK/cni/net.d/10-kindnet.conflist"
start_agent "${KUBE_FLAGS[@]}" --daemon-set-name colo --pod-namespace kube-system
sidecar
check "after the update colo-node holds the same pods" test "$(agent_get /debug/pods | jq '.pods | length')" -eq 3
fake DELETE /fake/daemonsets/kube-system/colo >/dev/null
stop_node
check "uninstall (DaemonSet gone): pods released, endpoints and state removed" \
  bash -c "[[ ! -e $WORK/state && -z \$(ls -A $WORK/run/pods) ]]"
check "... no hugetlbfs or other mount left under the run dir" bash -c "! grep -q '$WORK/run' /proc/mounts"
check "... the sidecar took colo-cni out of the chain, byte for byte" cmp "$WORK/cni/net.d/10-kindnet.conflist" "$WORK/kindnet.orig"
check "... and removed the binary" test ! -e "$WORK/cni/bin/colo-cni"
grep -h "shutdown\|colo-node says" "$WORK/agent.log" "$WORK/sidecar.log" | tail -n 3
finish
