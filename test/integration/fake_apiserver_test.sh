#!/usr/bin/env bash
# The fake kube-apiserver against real clients: kubectl through a kubeconfig (token and client
# certificate), and Debian's python3-kubernetes list and watch. If they accept it, colo's client
# is tested against the protocol, not against our own idea of it.
source "$(dirname "$0")/kube_lib.sh"

make_test_pki
echo -n tok-kubectl >"$WORK/token"
start_fake_api --token tok-kubectl
kubeconfig "$WORK/kc-token" token "$WORK/token"
kubeconfig "$WORK/kc-cert" cert
kc() { kubectl --kubeconfig "$1" --request-timeout 5s "${@:2}"; }

for i in 1 2 3; do api_pod "web-$i" '{"colo.dev/enabled":"true"}' >/dev/null; done
api_pod elsewhere '{}' other-node >/dev/null

check "kubectl (token) lists the pods as JSON" \
  test "$(kc "$WORK/kc-token" get pods -o json | jq -r '[.items[].metadata.name] | sort | join(",")')" == "elsewhere,web-1,web-2,web-3"
check "kubectl (client certificate) prints the server's Table" \
  bash -c "kubectl --kubeconfig '$WORK/kc-cert' get pods --no-headers | awk '{print \$1}' | sort | tr '\n' ' ' | grep -qx 'elsewhere web-1 web-2 web-3 '"
check "kubectl field selector reaches the server" \
  test "$(kc "$WORK/kc-token" get pods --field-selector "spec.nodeName=$NODE" -o name | wc -l)" -eq 3
check "kubectl pages with --chunk-size (limit/continue)" \
  test "$(kc "$WORK/kc-token" get pods --chunk-size 1 -o name | wc -l)" -eq 4
check "kubectl gets one pod, with its annotation" \
  test "$(kc "$WORK/kc-token" get pod web-2 -o jsonpath='{.metadata.annotations.colo\.dev/enabled}')" == true
check "kubectl: unknown pod is NotFound" bash -c "kubectl --kubeconfig '$WORK/kc-token' get pod nope 2>&1 | grep -q 'NotFound\|not found'"
echo -n wrong >"$WORK/badtoken"
kubeconfig "$WORK/kc-bad" token "$WORK/badtoken"
check "kubectl with a bad token is told Unauthorized (401)" \
  bash -c "kubectl --kubeconfig '$WORK/kc-bad' get pods 2>&1 | grep -qi 'unauthorized\|must be logged in'"

# kubectl's own watch: events arrive as the fake streams them in cut chunks.
kc "$WORK/kc-token" get pods --watch-only -o json --field-selector "spec.nodeName=$NODE" >"$WORK/kubectl-watch.json" 2>"$WORK/kubectl-watch.err" &
KW=$!
sleep 1
api_pod web-4 '{}' >/dev/null
annotate web-4 '{"colo.dev/enabled":"true"}'
sleep 1.5
kill "$KW" 2>/dev/null || true
wait "$KW" 2>/dev/null || true
check "kubectl --watch sees the new pod and its annotation" \
  test "$(jq -rs '[.[] | select(.metadata.name=="web-4")] | last | .metadata.annotations["colo.dev/enabled"]' "$WORK/kubectl-watch.json")" == true

# python3-kubernetes: list with paging, then watch ADDED/MODIFIED/DELETED, and a 410 as ApiException.
cat >"$WORK/client.py" <<'PY'
import sys
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
node = sys.argv[2]
names, cont = [], None
while True:
    page = v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=" + node, limit=2, _continue=cont)
    names += [p.metadata.name for p in page.items]
    cont = page.metadata._continue
    if not cont:
        break
print("LIST", ",".join(sorted(names)), page.metadata.resource_version, flush=True)
w = watch.Watch()
seen = []
for ev in w.stream(v1.list_pod_for_all_namespaces, field_selector="spec.nodeName=" + node,
                   resource_version=page.metadata.resource_version, allow_watch_bookmarks=True, timeout_seconds=6):
    obj = ev["object"]
    if ev["type"] == "BOOKMARK":
        seen.append("BOOKMARK")
        continue
    seen.append(ev["type"] + ":" + obj.metadata.name)
    print("EVENT", ev["type"], obj.metadata.name, (obj.metadata.annotations or {}).get("colo.dev/enabled"), flush=True)
    if ev["type"] == "DELETED":
        break
print("BOOKMARKS", seen.count("BOOKMARK") > 0, flush=True)
import ssl, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[4])
urllib.request.urlopen(urllib.request.Request(sys.argv[3] + "/fake/compact", data=b"{}", method="POST"), context=ctx).read()
try:
    list(watch.Watch().stream(v1.list_pod_for_all_namespaces, resource_version="1", timeout_seconds=2))
    print("EXPIRED none")
except client.exceptions.ApiException as e:
    print("EXPIRED", e.status)
PY
"$PYTHON" "$WORK/client.py" "$WORK/kc-cert" "$NODE" "$FAKE_URL" "$PKI/ca.crt" >"$WORK/py.out" 2>"$WORK/py.err" &
PY_PID=$!
for _ in $(seq 1 100); do grep -q LIST "$WORK/py.out" && break; sleep 0.05; done
sleep 1.2
api_pod web-5 '{}' >/dev/null
annotate web-5 '{"colo.dev/enabled":"true"}'
fake DELETE /fake/pods/default/web-5 >/dev/null
wait "$PY_PID" || true
cat "$WORK/py.err" "$WORK/py.out" >&2 || true
check "python3-kubernetes pages through the list (limit 2) and gets all 4 pods of the node" \
  grep -q "^LIST web-1,web-2,web-3,web-4 " "$WORK/py.out"
check "python3-kubernetes watch: ADDED, MODIFIED with the annotation, DELETED" \
  test "$(grep ^EVENT "$WORK/py.out" | tr '\n' '|')" == "EVENT ADDED web-5 None|EVENT MODIFIED web-5 true|EVENT DELETED web-5 true|"
check "python3-kubernetes watch received BOOKMARK events" grep -q "^BOOKMARKS True" "$WORK/py.out"
check "python3-kubernetes: a compacted resourceVersion is 410 Expired" grep -q "^EXPIRED 410" "$WORK/py.out"
finish
