#!/usr/bin/env bash
# colo end to end on kind: a two-node cluster, the image built and loaded, `helm install`, pods
# with and without the annotation on one node and across nodes, a `helm upgrade` that keeps the
# datapath and the chain, then `helm uninstall` and a check that every node is as it was. Needs
# docker (or podman: kind's podman provider, and nothing here calls docker then), kind, kubectl
# and helm; run by .github/workflows/e2e.yaml. Logs of every colo container, Events and each node's
# CNI configuration land in build/e2e-logs on failure. The cluster is deleted at exit unless E2E_KEEP=1.
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

LOGS=$ROOT/build/e2e-logs
collect_logs() {
  mkdir -p "$LOGS"
  kubectl get pods -A -o wide >"$LOGS/pods.txt" 2>&1 || true
  kubectl -n "$NS" describe ds,pods -l app.kubernetes.io/name=colo >"$LOGS/describe.txt" 2>&1 || true
  kubectl get events -A --sort-by=.lastTimestamp >"$LOGS/events.txt" 2>&1 || true
  local p c
  for p in $(kubectl -n "$NS" get pods -l app.kubernetes.io/name=colo -o name 2>/dev/null); do
    for c in install-cni colo-node cni-chain; do
      kubectl -n "$NS" logs "$p" -c "$c" >"$LOGS/${p#pod/}-$c.log" 2>&1 || true
      kubectl -n "$NS" logs "$p" -c "$c" --previous >"$LOGS/${p#pod/}-$c.previous.log" 2>/dev/null || true
    done
  done
  for n in $(kind get nodes --name "$CLUSTER" 2>/dev/null); do
    on_node "$n" 'for f in /etc/cni/net.d/*; do echo "== $f"; cat "$f"; echo; done; ls -la /opt/cni/bin /sys/fs/bpf' >"$LOGS/node-$n.txt" 2>&1 || true
  done
  echo "logs in $LOGS:" && tail -n 30 "$LOGS"/*colo-node.log 2>/dev/null || true
}
cleanup() {
  local rc=$?
  ((rc == 0 && FAILED == 0)) || collect_logs
  [[ -n ${E2E_KEEP:-} ]] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT

# --- cluster and image: docker, or podman (kind's podman provider) without a single docker call ---
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  ENGINE=docker
else
  ENGINE=podman
  export KIND_EXPERIMENTAL_PROVIDER=podman
fi
on_node() { "$ENGINE" exec "$1" sh -c "$2"; }
kind create cluster --name "$CLUSTER" --config "$ROOT/e2e/kind-config.yaml" --wait 120s
if [[ $ENGINE == docker ]]; then
  docker build -f "$ROOT/image/Dockerfile" -t "$IMAGE" "$ROOT"
  kind load docker-image "$IMAGE" --name "$CLUSTER"
else
  COLO_IMAGE=$IMAGE bash "$ROOT/scripts/build-image.sh"
  kind load image-archive "$ROOT/build/colo-image.tar" --name "$CLUSTER"
fi
NODE_CP=$(kubectl get nodes -l node-role.kubernetes.io/control-plane -o jsonpath='{.items[0].metadata.name}')
NODE_WORKER=$(kubectl get nodes -l colo.dev/e2e=worker -o jsonpath='{.items[0].metadata.name}')
# Hugepages for the pods that ask. kind nodes share the host kernel: only raise the reservation,
# and fail here, loudly, if the kernel does not give them (a later check would fail obscurely).
for n in "$NODE_CP" "$NODE_WORKER"; do
  on_node "$n" 'have=$(cat /proc/sys/vm/nr_hugepages); [ "$have" -ge 64 ] || echo 64 > /proc/sys/vm/nr_hugepages; [ "$(cat /proc/sys/vm/nr_hugepages)" -ge 64 ]' ||
    { echo "FATAL: cannot reserve 64 hugepages on $n (vm.nr_hugepages)" >&2; exit 1; }
done

# --- install ---
helm install colo "$ROOT/charts/colo" -n "$NS" --wait --timeout 3m \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set agent.datapath=on --set agent.logLevel=debug --set agent.hugepagesBudget=64Mi
# Ready means chained (colo-node's /readyz needs the installer's report): wait for every node's pod.
kubectl -n "$NS" rollout status ds/colo --timeout 180s
kubectl -n "$NS" wait pod -l app.kubernetes.io/name=colo --for=condition=Ready --timeout 180s
check "colo is Ready on both nodes" test "$(kubectl -n "$NS" get ds colo -o jsonpath='{.status.numberReady}')" -eq 2
pin_of() { echo "/sys/fs/bpf/colo-$(tr . _ <<<"$1")"; }
for n in "$NODE_CP" "$NODE_WORKER"; do
  check "$n: colo-cni chained into the file runtimes load" \
    on_node "$n" 'f=$(ls /etc/cni/net.d/*.conf /etc/cni/net.d/*.conflist /etc/cni/net.d/*.json 2>/dev/null | LC_ALL=C sort | head -n1); grep -q "\"colo-cni\"" "$f"'
  check "$n: colo-cni binary installed" on_node "$n" 'test -x /opt/cni/bin/colo-cni'
  check "$n: /readyz reports the chain" on_node "$n" 'curl -sf 127.0.0.1:9756/readyz | grep -q "\"chained\": true"'
  check "$n: its own pin dir ($(pin_of "$n"))" on_node "$n" "test -e $(pin_of "$n")/sockops_link"
done
check "the two nodes' pin dirs are not shared (kind nodes share the host's bpffs)" test "$(pin_of "$NODE_CP")" != "$(pin_of "$NODE_WORKER")"
KINDNET_BEFORE=$(on_node "$NODE_WORKER" 'sha256sum /etc/cni/net.d/10-kindnet.conflist')

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

# --- helm upgrade: a rollout keeps the datapath and the chain; our entry's settings change in place ---
LINK_ID=$(on_node "$NODE_WORKER" "ls -i $(pin_of "$NODE_WORKER")/sockops_link | cut -d' ' -f1")
helm upgrade colo "$ROOT/charts/colo" -n "$NS" --wait --timeout 3m --reuse-values --set cni.timeoutMs=700
kubectl -n "$NS" rollout status ds/colo --timeout 180s
check "after the upgrade colo-cni's entry has the new timeoutMs" \
  on_node "$NODE_WORKER" 'grep -A12 "\"colo-cni\"" /etc/cni/net.d/10-kindnet.conflist | grep -q "\"timeoutMs\": 700"'
check "... one colo-cni entry, not two" on_node "$NODE_WORKER" '[ "$(grep -c "\"colo-cni\"" /etc/cni/net.d/10-kindnet.conflist)" -eq 1 ]'
check "... the pinned sock_ops link is the same one (datapath kept)" \
  test "$(on_node "$NODE_WORKER" "ls -i $(pin_of "$NODE_WORKER")/sockops_link | cut -d' ' -f1")" == "$LINK_ID"
check "... the opted-in pod still answers hello" retry 30 kubectl exec client -c colo -- coloctl hello

# --- uninstall leaves the nodes as they were ---
kubectl delete -f <(sed -e "s#NODE_WORKER#$NODE_WORKER#; s#NODE_CP#$NODE_CP#; s#COLO_IMAGE#$IMAGE#" "$ROOT/e2e/pods.yaml") --wait
helm uninstall colo -n "$NS" --wait  # the pre-delete hook marks every colo pod first
retry 60 bash -c "[[ -z \$(kubectl -n $NS get pods -l app.kubernetes.io/name=colo -o name) ]]"
for n in "$NODE_CP" "$NODE_WORKER"; do
  check "$n: no colo-cni in any CNI config" on_node "$n" '! grep -rq colo-cni /etc/cni/net.d'
  check "$n: no colo-cni binary" on_node "$n" 'test ! -e /opt/cni/bin/colo-cni'
  check "$n: nothing pinned in $(pin_of "$n")" on_node "$n" "test ! -e $(pin_of "$n")"
  check "$n: no hugetlbfs or other mount under /run/colo" on_node "$n" '! grep -q " /run/colo" /proc/mounts'
done
check "$NODE_WORKER: kindnet's file byte for byte" test "$(on_node "$NODE_WORKER" 'sha256sum /etc/cni/net.d/10-kindnet.conflist')" == "$KINDNET_BEFORE"
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
