#!/usr/bin/env bash
# Kubernetes-mode helpers on top of lib.sh: a private PKI, the fake kube-apiserver
# (test/fake-apiserver), kubeconfigs, pods in the fake API, and pods run through colo-cni.
# shellcheck source=test/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Debian's interpreter, where python3-kubernetes lives (a pyenv python3 may come first in PATH).
PYTHON=/usr/bin/python3
FAKE_API_PY=$(cd "$(dirname "${BASH_SOURCE[0]}")/../fake-apiserver" && pwd)/fake_apiserver.py
PKI=$WORK/pki
FAKE_PID=""
NODE="it-$TAG"

# shellcheck source=test/fake-apiserver/pki.sh
source "$(dirname "${BASH_SOURCE[0]}")/../fake-apiserver/pki.sh"
make_test_pki() { make_pki "$PKI" "$NODE"; }

# in_cluster_api TOKEN: a private PKI, the fake API accepting TOKEN, and the in-cluster
# configuration a DaemonSet pod has: KUBERNETES_SERVICE_HOST/PORT and a service account
# directory ($WORK/sa) with the CA and the token.
in_cluster_api() {
  make_test_pki
  mkdir -p "$WORK/sa"
  cp "$PKI/ca.crt" "$WORK/sa/ca.crt"
  echo -n "$1" >"$WORK/sa/token"
  start_fake_api --token "$1"
  export KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$FAKE_PORT
}

# start_fake_api [extra args]: HTTPS on a free loopback port; FAKE_URL is set.
start_fake_api() {
  rm -f "$WORK/fake.port"
  "$PYTHON" "$FAKE_API_PY" --port-file "$WORK/fake.port" --cert "$PKI/server.crt" --key "$PKI/server.key" \
    --client-ca "$PKI/ca.crt" --state "$WORK/fake-state.json" --bookmark-interval 1 "$@" >>"$WORK/fake.log" 2>&1 &
  FAKE_PID=$!
  for _ in $(seq 1 100); do [[ -s $WORK/fake.port ]] && break; sleep 0.05; done
  [[ -s $WORK/fake.port ]] || { echo "fake apiserver did not start" >&2; cat "$WORK/fake.log" >&2; return 1; }
  FAKE_PORT=$(cat "$WORK/fake.port")
  FAKE_URL=https://127.0.0.1:$FAKE_PORT
}
stop_fake_api() {
  [[ -n $FAKE_PID ]] || return 0
  kill -KILL "$FAKE_PID" 2>/dev/null || true
  wait "$FAKE_PID" 2>/dev/null || true
  FAKE_PID=""
}
on_exit stop_fake_api

# fake METHOD PATH [JSON]: the fake's control API.
fake() {
  local args=(-sS --fail-with-body --max-time 10 --cacert "$PKI/ca.crt" -X "$1" "$FAKE_URL$2")
  [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  curl "${args[@]}"
}

# kubeconfig FILE token TOKEN_FILE | FILE cert
kubeconfig() {
  if [[ $2 == token ]]; then
    write_kubeconfig "$1" "$FAKE_URL" "$PKI/ca.crt" token "$3"
  else
    write_kubeconfig "$1" "$FAKE_URL" "$PKI/ca.crt" cert "$PKI/client.crt" "$PKI/client.key"
  fi
}

# pod_json NAME NODE [ANNOTATIONS_JSON] [NAMESPACE]
pod_json() {
  jq -nc --arg n "$1" --arg node "$2" --argjson a "${3:-{\}}" --arg ns "${4:-default}" \
    '{metadata:{name:$n,namespace:$ns,annotations:$a,labels:{app:$n}},spec:{nodeName:$node,serviceAccountName:"sa-\($n)",containers:[{name:"app",image:"busybox"}]},status:{phase:"Running"}}'
}
# api_pod NAME [ANNOTATIONS_JSON] [NODE]: creates the pod in the fake API; prints its uid.
api_pod() { fake POST /fake/pods "$(pod_json "$1" "${3:-$NODE}" "${2:-{\}}")" | jq -r .metadata.uid; }
annotate() { fake PATCH "/fake/pods/default/$1/annotations" "$2" >/dev/null; }

# cni_pod VERB NAME UID IP [ANNOTATIONS_JSON|-]: colo-cni alone for a pod in netns kt$TAG-NAME, as
# a runtime calls it (prevResult from a primary plugin). "-": the runtime passes no annotations.
cni_pod() {
  local verb=$1 name=$2 uid=$3 ip=$4 ann=${5:--}
  local conf
  conf=$(jq -nc --arg sock "$WORK/run/cni/cni.sock" --arg log "$WORK/colo-cni.log" --arg ip "$ip" --argjson ann "$([[ $ann == - ]] && echo null || echo "$ann")" \
    '{cniVersion:"1.0.0",name:"kube-it",type:"colo-cni",agentSocket:$sock,failurePolicy:"open",timeoutMs:1000,logFile:$log,logLevel:"debug",
      prevResult:{cniVersion:"1.0.0",interfaces:[{name:"eth0",sandbox:"x"}],ips:[{address:"\($ip)/24",interface:0}]}}
     + (if $ann == null then {} else {runtimeConfig:{"io.kubernetes.cri.pod-annotations":$ann}} end)')
  cni_direct "$verb" "$conf" CNI_CONTAINERID="ctr-$name" CNI_NETNS="/var/run/netns/kt$TAG-$name" CNI_IFNAME=eth0 \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$name;K8S_POD_UID=$uid;K8S_POD_INFRA_CONTAINER_ID=ctr-$name"
}

pod_field() { agent_get /debug/pods | jq -r --arg n "$1" --arg f "$2" '[.pods[] | select(.name==$n)][0][$f] | if . == null then "absent" else . end'; }
# wait_for SECONDS CMD...: polls every 50 ms until CMD succeeds; SECONDS is scaled by TIME_SCALE
# (lib.sh) under a sanitizer, where colo runs several times slower.
wait_for() {
  local limit=$1
  shift
  local end=$((SECONDS + limit * TIME_SCALE))
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 0.05
  done
}
field_is() { [[ $(pod_field "$1" "$2") == "$3" ]]; }
