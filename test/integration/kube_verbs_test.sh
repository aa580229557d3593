#!/usr/bin/env bash
# Kubernetes mode against the fake kube-apiserver, where the API is slow or awkward: a list whose
# continue token expires after writes (the watch must start from the new list), /readyz lastError
# clearing when the watch recovers, the GET of a pod during ADD bounded by colo-cni's deadline in
# total (a slow API and a 401 retry included), an event over the decoder's line limit, and the
# memory 50 pods with 200 KiB of annotations each cost.
source "$(dirname "$0")/kube_lib.sh"

in_cluster_api tok-1
KUBE_FLAGS=(--mode kubernetes --service-account-dir "$WORK/sa" --watch-timeout-seconds 3 --list-page-size 2)
kube_synced() { [[ $(agent_get /readyz | jq -r .checks.kubernetes.synced) == true ]]; }
last_error() { agent_get /readyz | jq -r .checks.kubernetes.lastError; }
has_error() { [[ -n $(last_error) ]]; }
no_error() { [[ -z $(last_error) ]]; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$AGENT_PID/status"; }

declare -A UID_OF
for p in a b c d; do make_netns "kt$TAG-$p"; done
UID_OF[a]=$(api_pod a '{"colo.dev/enabled":"true"}')
for p in b c d; do UID_OF[$p]=$(api_pod "$p" '{}'); done
start_agent "${KUBE_FLAGS[@]}"
check "synced" wait_for 5 kube_synced
check "pod a (from the API) is held active" cni_pod ADD a "${UID_OF[a]}" 198.18.17.10 -
check "... active" field_is a active true

# --- a list restarted after its continue token expired watches from the new list ---
lists() { metric "colo_kube_lists_total{reason=\"$1\"}"; }
offs() { local n; n=$(metric 'colo_pod_transitions_total{cause="annotation",to="off"}'); echo "${n:-0}"; }
OFF0=$(offs)
fake POST /fake/faults '{"expireContinue":1500}' >/dev/null
fake POST /fake/faults '{"watchEnd":"expire"}' >/dev/null  # the agent lists again; its 2nd page expires
sleep 0.5
annotate a '{"colo.dev/enabled":"false"}'  # written between the abandoned first page and the new list
annotate a '{"colo.dev/enabled":"true"}'
relisted() { [[ $(lists expired) -ge 1 ]] && kube_synced && [[ $(fake GET /fake/stats | jq .lists) -ge 6 ]]; }
check "the agent listed again (first page, expired continue, the list over)" wait_for 8 relisted
sleep 1.5  # a watch from the abandoned page's resourceVersion would replay both writes by now
check "the writes made meanwhile were not replayed: pod a never went off" test "$(offs)" == "$OFF0"
check "pod a is on" field_is a active true

# --- /readyz lastError clears when the watch recovers ---
fake POST /fake/tokens '{"tokens":["tok-2"]}' >/dev/null  # the agent's token is revoked
fake POST /fake/faults '{"watchEnd":"drop"}' >/dev/null
check "a refused watch shows in /readyz lastError" wait_for 8 has_error
echo -n tok-2 >"$WORK/sa/token.new" && mv "$WORK/sa/token.new" "$WORK/sa/token"
check "lastError clears once the watch works again" wait_for 10 no_error
cni_pod ADD b "${UID_OF[b]}" 198.18.17.11 '{}' >/dev/null
annotate b '{"colo.dev/enabled":"true"}'
check "and the watch follows changes" wait_for 5 field_is b active true

# --- the GET during ADD fits in colo-cni's deadline, in total ---
fake POST /fake/faults '{"silent":true}' >/dev/null  # the watch delivers nothing new: ADD must GET
UID_OF[e]=$(api_pod e '{"colo.dev/enabled":"true"}')
make_netns "kt$TAG-e"
fake POST /fake/tokens '{"tokens":["tok-3"]}' >/dev/null  # 401, re-read, retry...
fake POST /fake/faults '{"slowMs":600}' >/dev/null        # ... each answer 600 ms late
conf_closed() {
  jq -nc --arg sock "$WORK/run/cni/cni.sock" --arg log "$WORK/colo-cni.log" \
    '{cniVersion:"1.0.0",name:"kube-it",type:"colo-cni",agentSocket:$sock,failurePolicy:"closed",timeoutMs:1000,logFile:$log,
      prevResult:{cniVersion:"1.0.0",ips:[{address:"198.18.17.14/24"}]}}'
}
T0=$(date +%s%N)
check "ADD (failurePolicy closed, no annotations) succeeds while the API is slow and says 401" \
  cni_direct ADD "$(conf_closed)" CNI_CONTAINERID=ctr-e CNI_NETNS="/var/run/netns/kt$TAG-e" CNI_IFNAME=eth0 \
  CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=e;K8S_POD_UID=${UID_OF[e]}"
# Under "closed" a colo-node answer later than colo-cni's 1000 ms would have failed the ADD (code 11).
echo "ADD took $((($(date +%s%N) - T0) / 1000000)) ms, colo-cni and its process start included"
check "the lookup gave up in time" test "$(metric 'colo_cni_api_lookups_total{result="unknown"}')" -ge 1
check "the pod is held dormant until the API tells" field_is e active false
echo -n tok-3 >"$WORK/sa/token.new" && mv "$WORK/sa/token.new" "$WORK/sa/token"
fake POST /fake/faults '{"slowMs":null,"silent":null}' >/dev/null
check "then turned on from the watch" wait_for 15 field_is e active true

# --- an event over the decoder's limit (16 MiB) is logged and answered by a list ---
python3 -c '
import json, sys
print(json.dumps({"metadata": {"name": "huge", "namespace": "default", "annotations": {"big": "x" * (17 << 20)}},
                  "spec": {"nodeName": sys.argv[1], "containers": [{"name": "app", "image": "busybox"}]}}))' "$NODE" >"$WORK/huge.json"
fake POST /fake/pods "@$WORK/huge.json" >/dev/null
check "an over-long watch event is logged" wait_for 10 grep -q "longer than 16777216 bytes; not decoded; listing again" "$WORK/agent.log"
check "and counted" wait_for 5 bash -c "[[ \$(curl -sf http://$AGENT_HTTP/metrics | awk '\$1==\"colo_kube_objects_refused_total{where=\\\"too_long\\\"}\" {print \$2}') -ge 1 ]]"
has_huge() { [[ $(agent_get /readyz | jq .checks.kubernetes.pods) -eq 6 ]]; }
check "the list that follows has the pod (nothing silently dropped)" wait_for 10 has_huge
fake DELETE /fake/pods/default/huge >/dev/null

# --- memory: only the annotations colo reads are kept ---
stop_agent  # a fresh heap, so that memory freed earlier cannot hide what is kept
start_agent "${KUBE_FLAGS[@]}"
check "restarted and synced" wait_for 10 kube_synced
RSS0=$(rss_kib)
for i in $(seq 1 50); do
  python3 -c '
import json, sys
print(json.dumps({"metadata": {"name": "fat-" + sys.argv[2], "namespace": "default",
  "annotations": {"colo.dev/enabled": "false", "payload": "y" * (200 << 10)}, "labels": {"app": "fat"}},
  "spec": {"nodeName": sys.argv[1], "containers": [{"name": "app", "image": "busybox"}]}}))' "$NODE" "$i" >"$WORK/fat.json"
  fake POST /fake/pods "@$WORK/fat.json" >/dev/null
done
fat_cached() { [[ $(agent_get /readyz | jq .checks.kubernetes.pods) -ge 55 ]]; }
check "50 pods with 200 KiB of annotations each are watched" wait_for 15 fat_cached
fake POST /fake/faults '{"watchEnd":"expire"}' >/dev/null  # and listed once more, all at once
sleep 2
check "still synced" wait_for 10 kube_synced
RSS1=$(rss_kib)
echo "colo-node RSS: ${RSS0} KiB before, ${RSS1} KiB with the 50 pods ($(((RSS1 - RSS0) / 1024)) MiB more)"
check "they cost less than 8 MiB of RSS (they carry 10 MiB of annotations)" test $((RSS1 - RSS0)) -lt $((8 * 1024))

finish
