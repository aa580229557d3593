#!/usr/bin/env bash
# colo end to end on kind: a two-node cluster, the image built and loaded, `helm install`, pods
# with and without the annotation on one node and across nodes, then `helm uninstall` and a check
# that every node is as it was. Needs docker (or podman), kind, kubectl and helm; run by
# .github/workflows/e2e.yaml. The cluster is deleted at exit unless E2E_KEEP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER=${E2E_CLUSTER:-colo-e2e}
IMAGE=${E2E_IMAGE:-localhost/colo:e2e}
NS=kube-system
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# retry SECONDS CMD...: until CMD succeeds.
retry() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 1
  done
}

cleanup() {
  local rc=$?
  if ((rc != 0 || FAILED != 0)); then
    kubectl -n "$NS" logs -l app.kubernetes.io/name=colo -c colo-node --tail 50 2>/dev/null || true
  fi
  [[ -n ${E2E_KEEP:-} ]] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT

# --- cluster and image ---
kind create cluster --name "$CLUSTER" --config "$ROOT/e2e/kind-config.yaml" --wait 120s
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  docker build -f "$ROOT/image/Dockerfile" -t "$IMAGE" "$ROOT"
  kind load docker-image "$IMAGE" --name "$CLUSTER"
else
  COLO_IMAGE=$IMAGE bash "$ROOT/scripts/build-image.sh"
  kind load image-archive "$ROOT/build/colo-image.tar" --name "$CLUSTER"
fi
NODE_CP=$(kubectl get nodes -l node-role.kubernetes.io/control-plane -o jsonpath='{.items[0].metadata.name}')
NODE_WORKER=$(kubectl get nodes -l colo.dev/e2e=worker -o jsonpath='{.items[0].metadata.name}')
on_node() { docker exec "$1" sh -c "$2"; }
for n in "$NODE_CP" "$NODE_WORKER"; do  # hugepages for the pods that ask (kind nodes share the host kernel)
  on_node "$n" 'echo 64 > /proc/sys/vm/nr_hugepages' || true
done

# --- install ---
helm install colo "$ROOT/charts/colo" -n "$NS" --wait --timeout 3m \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set agent.datapath=on --set agent.logLevel=debug --set agent.hugepagesBudget=64Mi
check "colo runs on both nodes" test "$(kubectl -n "$NS" get ds colo -o jsonpath='{.status.numberReady}')" -eq 2
for n in "$NODE_CP" "$NODE_WORKER"; do
  check "$n: colo-cni chained into the active conflist" on_node "$n" 'grep -q "\"colo-cni\"" "$(ls /etc/cni/net.d/*.conflist | head -n1)"'
  check "$n: colo-cni binary installed" on_node "$n" 'test -x /opt/cni/bin/colo-cni'
done

# --- pods ---
sed -e "s#NODE_WORKER#$NODE_WORKER#; s#NODE_CP#$NODE_CP#; s#COLO_IMAGE#$IMAGE#" "$ROOT/e2e/pods.yaml" | kubectl apply -f -
kubectl wait --for=condition=Ready pod -l app=colo-e2e --timeout 180s
uid() { kubectl get pod "$1" -o jsonpath='{.metadata.uid}'; }
ip_of() { kubectl get pod "$1" -o jsonpath='{.status.podIP}'; }
check "opted-in pod answers hello over @colo with its identity" \
  bash -c "kubectl exec client -c colo -- coloctl hello | grep -q '\"name\": *\"client\"'"
check "a pod not opted in has no @colo" bash -c "! kubectl exec plain -c colo -- coloctl hello >/dev/null 2>&1"
check "the server pod sees its colo.sock through its own directory" kubectl exec server -c colo -- test -S /run/colo-pod/colo.sock
check "the server pod's hugepages are a hugetlbfs mount" \
  on_node "$NODE_WORKER" "grep -q '/run/colo/pods/$(uid server)/hugepages hugetlbfs' /proc/mounts"

metric() { on_node "$NODE_WORKER" "curl -sf 127.0.0.1:9756/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
send() { kubectl exec "$1" -c net -- sh -c "head -c 20000000 /dev/zero | nc -w 5 $2 5001"; }
before=$(metric colo_datapath_bytes_redirected_total)
send client "$(ip_of server)"
after=$(metric colo_datapath_bytes_redirected_total)
check "same-node traffic between opted-in pods is spliced (redirected bytes +$((${after%.*} - ${before%.*})))" \
  test "$((${after%.*} - ${before%.*}))" -ge 10000000
before=$after
send far "$(ip_of server)"
send plain "$(ip_of server)"
after=$(metric colo_datapath_bytes_redirected_total)
check "cross-node and not-opted-in traffic is left alone" test "${after%.*}" -eq "${before%.*}"
kubectl annotate pod plain colo.dev/enabled=true
check "annotating a running pod turns colo on" retry 20 kubectl exec plain -c colo -- coloctl hello
check "the pod has a ColoEnabled Event" retry 20 bash -c "kubectl get events --field-selector involvedObject.name=plain | grep -q ColoEnabled"

# --- uninstall leaves the nodes as they were ---
kubectl delete -f <(sed -e "s#NODE_WORKER#$NODE_WORKER#; s#NODE_CP#$NODE_CP#; s#COLO_IMAGE#$IMAGE#" "$ROOT/e2e/pods.yaml") --wait
helm uninstall colo -n "$NS" --wait
retry 60 bash -c "[[ -z \$(kubectl -n $NS get pods -l app.kubernetes.io/name=colo -o name) ]]"
for n in "$NODE_CP" "$NODE_WORKER"; do
  check "$n: no colo-cni in any CNI config" on_node "$n" '! grep -rq colo-cni /etc/cni/net.d'
  check "$n: no colo-cni binary" on_node "$n" 'test ! -e /opt/cni/bin/colo-cni'
  check "$n: nothing pinned under /sys/fs/bpf/colo" on_node "$n" 'test ! -e /sys/fs/bpf/colo'
  check "$n: no hugetlbfs or other mount under /run/colo" on_node "$n" '! grep -q " /run/colo" /proc/mounts'
done
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
