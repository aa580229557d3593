#!/usr/bin/env bash
# Kubernetes mode at scale: a fake cluster of 5000 pods, 100 on this node, 1000 Services and 5000
# EndpointSlices (a quarter of the Services ask for node-local traffic, so colo-node translates
# those with a backend here). Measures, from a watch event's arrival to colo having applied it
# (endpoint bound in the pod, address in the datapath map), the latency colo-node reports for 100
# opt-in annotations; and colo-node's RSS.
# shellcheck source=bench/node_lib.sh
source "$(dirname "$0")/node_lib.sh"
# shellcheck source=test/fake-apiserver/pki.sh
source "$HERE/../test/fake-apiserver/pki.sh"
LOCAL=${COLO_BENCH_KUBE_LOCAL:-100}
TOTAL=${COLO_BENCH_KUBE_TOTAL:-5000}
SERVICES=${COLO_BENCH_KUBE_SERVICES:-1000}
SLICES=${COLO_BENCH_KUBE_SLICES:-5000}
NODE=bench-node-$TAG
PY=/usr/bin/python3
FAKE=""
kube_cleanup() {
  set +e
  [[ -n $FAKE ]] && kill "$FAKE" 2>/dev/null && wait "$FAKE" 2>/dev/null
  [[ -n $AGENT ]] && kill -TERM "$AGENT" && wait "$AGENT"
  AGENT=""
  umount -l "$WORK/run" "$WORK/state" 2>/dev/null
  node_cleanup
}
trap kube_cleanup EXIT
# colo-node's run and state directories on tmpfs, as /run is on a real node (here /run is on the
# root disk, whose journal now and then stalls a socket bind for milliseconds).
mkdir -p "$WORK/run" "$WORK/state"
mount -t tmpfs -o size=64m,mode=0755 colo-bench "$WORK/run"
mount -t tmpfs -o size=64m,mode=0700 colo-bench "$WORK/state"

make_pki "$WORK/pki" "$NODE"
# The API server lives on other machines in a cluster: here it gets CPU 1 and colo-node CPU 0, so
# that the 2-CPU VM's scheduler ticks (4 ms) measure the API server's load, not colo's.
taskset -c 1 "$PY" "$HERE/../test/fake-apiserver/fake_apiserver.py" --port-file "$WORK/fake.port" --cert "$WORK/pki/server.crt" \
  --key "$WORK/pki/server.key" --client-ca "$WORK/pki/ca.crt" --bookmark-interval 5 >"$WORK/fake.log" 2>&1 &
FAKE=$!
for _ in $(seq 1 100); do [[ -s $WORK/fake.port ]] && break; sleep 0.05; done
URL=https://127.0.0.1:$(cat "$WORK/fake.port")
write_kubeconfig "$WORK/kc" "$URL" "$WORK/pki/ca.crt" cert "$WORK/pki/client.crt" "$WORK/pki/client.key"
jq -nc --arg node "$NODE" --argjson local "$LOCAL" --argjson total "$TOTAL" '[range(0; $total) as $i |
  {metadata: {name: "p\($i)", namespace: "ns\($i % 20)", annotations: {}, labels: {app: "a\($i % 100)"}},
   spec: {nodeName: (if $i < $local then $node else "node-\($i % 50)" end), serviceAccountName: "sa"}, status: {phase: "Running"}}]' |
  curl -sS --fail --max-time 120 --cacert "$WORK/pki/ca.crt" -X POST -H 'Content-Type: application/json' --data-binary @- "$URL/fake/pods" |
  jq -r --arg node "$NODE" '.[] | select(.spec.nodeName==$node) | "\(.metadata.namespace) \(.metadata.name) \(.metadata.uid)"' >"$WORK/local"

# Services and EndpointSlices as the API serves them (the fields real objects carry, most of which
# colo-node drops). Pod p<i> has 198.18.41.<i+2> when it is on this node (as the CNI ADDs below
# give it), else an address of 198.18.128.0/17; ClusterIPs from 198.19.0.0/16. Slice s of service
# s % SERVICES lists 5 pods from p<s>.
jq -nc --argjson n "$SERVICES" '[range(0; $n) as $k |
  {metadata: {name: "s\($k)", namespace: "ns\($k % 20)", labels: {app: "a\($k)", "app.kubernetes.io/part-of": "bench"},
     annotations: (if $k % 4 == 0 then {"colo.dev/prefer-local": "true"} else {"meta.helm.sh/release-name": "bench"} end)},
   spec: {type: "ClusterIP", clusterIP: "198.19.\(($k / 250) | floor).\($k % 250 + 1)", clusterIPs: ["198.19.\(($k / 250) | floor).\($k % 250 + 1)"],
     ipFamilies: ["IPv4"], ipFamilyPolicy: "SingleStack", selector: {app: "a\($k)"}, sessionAffinity: "None",
     internalTrafficPolicy: (if $k % 8 == 4 then "Local" else "Cluster" end),
     ports: [{name: "http", protocol: "TCP", port: 80, targetPort: 8080}, {name: "metrics", protocol: "TCP", port: 9090, targetPort: "metrics"}]},
   status: {loadBalancer: {}}}]' |
  curl -sS --fail --max-time 120 --cacert "$WORK/pki/ca.crt" -X POST -H 'Content-Type: application/json' --data-binary @- "$URL/fake/services" >/dev/null
jq -nc --argjson n "$SLICES" --argjson svcs "$SERVICES" --argjson total "$TOTAL" --argjson local "$LOCAL" --arg node "$NODE" '[range(0; $n) as $s |
  {metadata: {name: "s\($s % $svcs)-\($s)", namespace: "ns\(($s % $svcs) % 20)", generateName: "s\($s % $svcs)-",
     labels: {"kubernetes.io/service-name": "s\($s % $svcs)", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
     ownerReferences: [{apiVersion: "v1", kind: "Service", name: "s\($s % $svcs)", uid: "00000000-0000-0000-0000-000000000000", controller: true}]},
   addressType: "IPv4",
   ports: [{name: "http", protocol: "TCP", port: 8080}, {name: "metrics", protocol: "TCP", port: 9090}],
   endpoints: [range(0; 5) as $e | (($s + $e * 1000) % $total) as $i |
     {addresses: [if $i < $local then "198.18.41.\($i + 2)" else "198.18.\(128 + (($i / 250) | floor)).\(($i % 250) + 1)" end],
      conditions: {ready: true, serving: true, terminating: false},
      nodeName: (if $i < $local then $node else "node-\($i % 50)" end), zone: "zone-a",
      targetRef: {kind: "Pod", namespace: "ns\($i % 20)", name: "p\($i)", uid: "11111111-1111-1111-1111-111111111111"}}]}]' |
  curl -sS --fail --max-time 120 --cacert "$WORK/pki/ca.crt" -X POST -H 'Content-Type: application/json' --data-binary @- "$URL/fake/endpointslices" >/dev/null

node_start 198.18.40.0/24 --mode kubernetes --kubeconfig "$WORK/kc" --node-name "$NODE" --http-address 127.0.0.1:0
HTTP=$(grep -o 'http: serving .* on [0-9.:]*' "$WORK/agent.log" | awk '{print $NF}')
for _ in $(seq 1 200); do [[ $(curl -sf "http://$HTTP/readyz" | jq -r .checks.kubernetes.synced) == true ]] && break; sleep 0.05; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$AGENT/status"; }
RSS_SYNCED=$(rss)

i=0
while read -r ns name uid; do
  ip netns add "cbn$TAG-$name"
  PODS+=("$name")
  conf=$(jq -nc --arg sock "$WORK/run/cni/cni.sock" --arg ip "198.18.41.$((i % 250 + 2))" \
    '{cniVersion:"1.0.0",name:"kube-bench",type:"colo-cni",agentSocket:$sock,failurePolicy:"closed",logFile:"/dev/null",
      runtimeConfig:{"io.kubernetes.cri.pod-annotations":{}},
      prevResult:{cniVersion:"1.0.0",interfaces:[{name:"eth0",sandbox:"x"}],ips:[{address:"\($ip)/32",interface:0}]}}')
  env -i CNI_COMMAND=ADD CNI_PATH="$BIN" CNI_CONTAINERID="ctr-$name" CNI_NETNS="/var/run/netns/cbn$TAG-$name" CNI_IFNAME=eth0 \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=$name;K8S_POD_UID=$uid" "$BIN/colo-cni" <<<"$conf" >/dev/null
  i=$((i + 1))
done <"$WORK/local"
RSS_DORMANT=$(rss)

# Rounds of: turn every pod on (one annotation every 20 ms, over a kept-alive connection, so the
# agent sees events one by one), wait until all are active, check the map, turn them all off.
ROUNDS=${COLO_BENCH_KUBE_ROUNDS:-3}
annotate_all() {
  taskset -c 1 "$PY" - "$URL" "$WORK/pki/ca.crt" "$WORK/local" "$1" <<'PY'
import http.client, json, ssl, sys, time, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
conn = http.client.HTTPSConnection(url.hostname, url.port, context=ssl.create_default_context(cafile=sys.argv[2]))
value = None if sys.argv[4] == "null" else sys.argv[4]
for line in open(sys.argv[3]):
    ns, name, _ = line.split()
    conn.request("PATCH", "/fake/pods/%s/%s/annotations" % (ns, name), json.dumps({"colo.dev/enabled": value}),
                 {"Content-Type": "application/json"})
    conn.getresponse().read()
    time.sleep(0.02)
PY
}
active_count() { curl -sf "http://$HTTP/debug/pods" | jq '[.pods[] | select(.active)] | length'; }
wait_active() {
  for _ in $(seq 1 200); do
    [[ $(active_count) -eq $1 ]] && return 0
    sleep 0.05
  done
  echo "kube bench: $(active_count) pods active, expected $1" >&2
  return 1
}
for r in $(seq 1 "$ROUNDS"); do
  annotate_all true
  wait_active "$LOCAL"
  if [[ $r -eq 1 ]]; then
    for _ in $(seq 1 100); do  # the translation's sync thread follows the pods
      [[ $(curl -sf "http://$HTTP/metrics" | awk '$1 == "colo_service_frontends" {print $2}') != 0 ]] && break
      sleep 0.05
    done
    RSS_ACTIVE=$(rss)
    IN_MAP=$(bpftool -j map dump pinned "$PIN/colo_pods" | jq length)
    FRONTENDS=$(bpftool -j map dump pinned "$PIN/colo_svc_frontends" | jq length)
    TRANSLATED=$(curl -sf "http://$HTTP/readyz" | jq '.checks.serviceTranslation.services | length')
  fi
  if ((r < ROUNDS)); then
    annotate_all null
    wait_active 0
  fi
done
m() { curl -sf "http://$HTTP/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
P50=$(m 'colo_kube_event_apply_seconds{change="on",quantile="0.5"}')
P99=$(m 'colo_kube_event_apply_seconds{change="on",quantile="0.99"}')
MAX=$(m 'colo_kube_event_apply_seconds{change="on",quantile="1"}')
N=$(m 'colo_kube_event_apply_samples{change="on"}')
OFF99=$(m 'colo_kube_event_apply_seconds{change="off",quantile="0.99"}')
ms() { awk -v s="$1" 'BEGIN {printf "%.2f", s * 1000}'; }

printf '%-58s %s\n' "cluster pods / on this node" "$TOTAL / $LOCAL"
printf '%-58s %s / %s\n' "Services / EndpointSlices in the cluster" "$SERVICES" "$SLICES"
printf '%-58s %s\n' "addresses in the datapath map once all are on" "$IN_MAP"
printf '%-58s %s (%s Services)\n' "Service frontends translated once all are on" "$FRONTENDS" "$TRANSLATED"
printf '%-58s %s / %s / %s ms (%s events; target p99 < 10 ms)\n' "watch event -> colo on (endpoint + map): p50 / p99 / max" \
  "$(ms "$P50")" "$(ms "$P99")" "$(ms "$MAX")" "$N"
printf '%-58s %s ms\n' "watch event -> colo off: p99" "$(ms "${OFF99:-0}")"
printf '%-58s %s / %s / %s MiB\n' "colo-node RSS: synced / $LOCAL dormant / $LOCAL active" \
  "$((RSS_SYNCED / 1024))" "$((RSS_DORMANT / 1024))" "$((RSS_ACTIVE / 1024))"
jq -n --argjson total "$TOTAL" --argjson local "$LOCAL" --argjson inmap "$IN_MAP" --arg p50 "$P50" --arg p99 "$P99" --arg max "$MAX" \
  --argjson rss1 "$RSS_SYNCED" --argjson rss2 "$RSS_DORMANT" --argjson rss3 "$RSS_ACTIVE" \
  --argjson svcs "$SERVICES" --argjson slices "$SLICES" --argjson fe "$FRONTENDS" \
  '{clusterPods:$total, localPods:$local, services:$svcs, endpointSlices:$slices, frontends:$fe, addressesInMap:$inmap, applySeconds:{p50:($p50|tonumber), p99:($p99|tonumber), max:($max|tonumber)},
    rssKiB:{synced:$rss1, dormant:$rss2, active:$rss3}}' >"$OUT/kube.json"
echo "results: $OUT/kube.json"
