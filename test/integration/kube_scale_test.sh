#!/usr/bin/env bash
# 5000 pods in the cluster, 100 of them on this node: colo-node lists and watches only its own,
# holds the 100 dormant from CNI, turns all of them on from their annotations, and releases them
# when they are deleted in the API.
source "$(dirname "$0")/kube_lib.sh"

LOCAL=100
make_test_pki
start_fake_api
kubeconfig "$WORK/kc" cert
jq -nc --arg node "$NODE" --argjson local "$LOCAL" '[range(0; 5000) as $i |
  {metadata: {name: "p\($i)", namespace: "ns\($i % 20)", annotations: {}},
   spec: {nodeName: (if $i < $local then $node else "node-\($i % 50)" end)}, status: {phase: "Running"}}]' >"$WORK/pods.json"
curl -sS --fail --max-time 60 --cacert "$PKI/ca.crt" -X POST -H 'Content-Type: application/json' --data-binary @"$WORK/pods.json" \
  "$FAKE_URL/fake/pods" | jq -r --arg node "$NODE" '.[] | select(.spec.nodeName==$node) | "\(.metadata.namespace) \(.metadata.name) \(.metadata.uid)"' >"$WORK/local"
check "the fake cluster has 5000 pods, $LOCAL on this node" bash -c "[[ \$(wc -l <'$WORK/local') -eq $LOCAL ]]"

start_agent --mode kubernetes --kubeconfig "$WORK/kc" --list-page-size 500
kube() { agent_get /readyz | jq -r ".checks.kubernetes.$1"; }
check "colo-node syncs with a client certificate" wait_for 10 bash -c "[[ \$(curl -sf http://$AGENT_HTTP/readyz | jq -r .checks.kubernetes.synced) == true ]]"
check "it holds only this node's $LOCAL pods" test "$(kube pods)" -eq "$LOCAL"

# Each local pod gets a netns and a CNI ADD (annotations passed, not opted in): dormant.
i=0
while read -r ns name uid; do
  make_netns "kt$TAG-$name"
  conf=$(jq -nc --arg sock "$WORK/run/cni/cni.sock" --arg log "$WORK/colo-cni.log" --arg ip "198.18.14.$((i + 10))" \
    '{cniVersion:"1.0.0",name:"kube-it",type:"colo-cni",agentSocket:$sock,failurePolicy:"closed",timeoutMs:1000,logFile:$log,
      runtimeConfig:{"io.kubernetes.cri.pod-annotations":{}},
      prevResult:{cniVersion:"1.0.0",interfaces:[{name:"eth0",sandbox:"x"}],ips:[{address:"\($ip)/24",interface:0}]}}')
  cni_direct ADD "$conf" CNI_CONTAINERID="ctr-$name" CNI_NETNS="/var/run/netns/kt$TAG-$name" CNI_IFNAME=eth0 \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=$name;K8S_POD_UID=$uid" >/dev/null
  i=$((i + 1))
done <"$WORK/local"
count() { agent_get /debug/pods | jq "[.pods[] | select(.active == $1)] | length"; }
check "$LOCAL pods held dormant" test "$(count false)" -eq "$LOCAL"

T0=$(date +%s%N)
while read -r ns name _; do
  fake PATCH "/fake/pods/$ns/$name/annotations" '{"colo.dev/enabled":"true"}' >/dev/null
done <"$WORK/local"
all_active() { [[ $(count true) -eq $LOCAL ]]; }
check "annotating all $LOCAL turns colo on for every one" wait_for 10 all_active
echo "all $LOCAL active $((($(date +%s%N) - T0) / 1000000)) ms after the first annotation"
check "each has its endpoint" test "$(find "$WORK/run/pods" -name colo.sock | wc -l)" -eq "$LOCAL"
echo "colo-node RSS with $LOCAL local pods of 5000: $(awk '/VmRSS/ {print $2, $3}' "/proc/$AGENT_PID/status")"
echo "event to colo on, p99: $(metric 'colo_kube_event_apply_seconds{change="on",quantile="0.99"}') s"
check "no watch event went missing or was applied twice" \
  test "$(metric 'colo_pod_transitions_total{to="on",cause="annotation"}')" -eq "$LOCAL"

while read -r ns name _; do fake DELETE "/fake/pods/$ns/$name" >/dev/null; done <"$WORK/local"
none_left() { [[ $(agent_get /debug/pods | jq '.pods | length') -eq 0 ]]; }
check "deleting them in the API releases them all (no DEL came)" wait_for 10 none_left
check "no endpoint directory left" test "$(find "$WORK/run/pods" -mindepth 1 | wc -l)" -eq 0
finish
