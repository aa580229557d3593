#!/usr/bin/env bash
# colo's main job on its embedded default: a simulated node. Pods are network namespaces on a
# bridge, wired by Debian's bridge + host-local with colo-cni chained after them, the way kubelet's
# runtime would; colo-node runs standalone on its default paths. Addresses are 198.19.0.0/24
# (inside the 198.18.0.0/15 benchmarking range); nothing routes out. Everything is torn down at exit.
set -euo pipefail
BUILD=${1:-build}
BIN=$(cd "$BUILD/bin" && pwd)
REF=/usr/lib/cni
[[ $(id -u) -eq 0 ]] || { echo "demo: needs root (network namespaces)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/colo-demo.XXXXXX)
BR=colo-demo0
HTTP=127.0.0.1:9756
DATAPATH=${COLO_DATAPATH:-auto}  # COLO_DATAPATH=on forces the splice on a kernel that fails the self-test
PODS=(frontend cart payments batch)
AGENT=""
HUGEPAGES_SAVED=$(cat /proc/sys/vm/nr_hugepages) HUGEPAGES_SET=""
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  set +e
  for p in "${PODS[@]}"; do
    "$BIN/colo-chain" DEL --conflist "$WORK/net.conflist" --id "ctr-$p" --netns "/var/run/netns/demo-$p" \
      --cni-path "$BIN:$REF" --cache "$WORK/cache" >/dev/null 2>&1
    ip netns del "demo-$p" 2>/dev/null
  done
  [[ -n $AGENT ]] && kill -TERM "$AGENT" 2>/dev/null && wait "$AGENT" 2>/dev/null
  "$BIN/colo-node" uninstall >/dev/null  # unpin maps and links: leave the node as it was
  ip link del "$BR" 2>/dev/null
  # Put the pool back only if the demo raised it and nobody changed it since.
  [[ -n $HUGEPAGES_SET && $(cat /proc/sys/vm/nr_hugepages) == "$HUGEPAGES_SET" ]] && echo "$HUGEPAGES_SAVED" >/proc/sys/vm/nr_hugepages
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/net.conflist" <<CONF
{
  "cniVersion": "1.0.0",
  "name": "colo-demo",
  "plugins": [
    {"type": "bridge", "bridge": "$BR", "isGateway": false, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.19.0.0/24"}]], "dataDir": "$WORK/ipam"}},
    {"type": "colo-cni", "failurePolicy": "open", "logFile": "$WORK/colo-cni.log",
     "capabilities": {"io.kubernetes.cri.pod-annotations": true}}
  ]
}
CONF

# 32 MiB of 2 MiB pages for the demo: the pool is raised if smaller, never lowered.
if ((HUGEPAGES_SAVED < 16)); then echo 16 >/proc/sys/vm/nr_hugepages; HUGEPAGES_SET=$(cat /proc/sys/vm/nr_hugepages); fi
say "colo-node, standalone, on its defaults (/run/colo/cni.sock, state in /run/colo/state, http $HTTP)"
"$BIN/colo-node" --http-address "$HTTP" --hugepages-budget 32Mi --datapath "$DATAPATH" >"$WORK/colo-node.log" 2>&1 &
AGENT=$!
for _ in $(seq 1 100); do [[ -S /run/colo/cni.sock ]] && curl -sf "http://$HTTP/readyz" >/dev/null && break; sleep 0.05; done
curl -sf "http://$HTTP/readyz" | jq -c '{ready, node, mode}'
say "the transparent splice (datapath: $DATAPATH) and its self-test"
curl -sf "http://$HTTP/readyz" | jq -r '.checks.datapath | "  state: \(.state) (\(.reason))\n  cgroup: \(.cgroup)", (.selftest | to_entries[] | "  self-test \(.key): \(.value)")'

ip link add "$BR" type bridge && ip link set "$BR" address 02:c0:10:de:00:01 && ip link set "$BR" up
say "kubelet's runtime creates ${#PODS[@]} pods: bridge + host-local, then colo-cni (batch has not opted in)"
for p in "${PODS[@]}"; do
  ip netns add "demo-$p"
  ip -n "demo-$p" link set lo up
  annotations='{"colo.dev/enabled":"true"}'
  [[ $p == batch ]] && annotations='{"colo.dev/enabled":"false"}'
  [[ $p == cart ]] && annotations='{"colo.dev/enabled":"true","colo.dev/hugepages":"16Mi"}'
  uid=$(cat /proc/sys/kernel/random/uuid)
  result=$("$BIN/colo-chain" ADD --conflist "$WORK/net.conflist" --id "ctr-$p" --netns "/var/run/netns/demo-$p" \
    --cni-path "$BIN:$REF" --cache "$WORK/cache" \
    --args "K8S_POD_INFRA_CONTAINER_ID=ctr-$p;K8S_POD_UID=$uid;IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=$p" \
    --annotations "$annotations")
  printf '  %-9s %-58s -> %s\n' "$p" "$annotations" "$(jq -r '.ips[0].address' <<<"$result")"
done

say "what colo-node knows (GET /debug/pods)"
curl -sf "http://$HTTP/debug/pods" |
  jq -r '.pods[] | "  \(.namespace)/\(.name)\tuid \(.uid[0:8])…\tips \(.ips | join(","))\thugepages \(.hugepageBytes)\tspliced \(.spliced)\topt-in by \(.optInSource)"'

say "inside each pod, @colo tells it who it is (coloctl hello); batch has no endpoint"
for p in "${PODS[@]}"; do
  printf '  %-9s ' "$p"
  ip netns exec "demo-$p" "$BIN/coloctl" hello 2>&1 |
    jq -r '"\(.identity.namespace)/\(.identity.name) on node \(.identity.node), peer uid \(.peer.uid), hugepages \(.hugepages.bytes // 0) bytes"' 2>/dev/null ||
    echo "no @colo here (not opted in)"
done
echo "  cart's hugetlbfs mount: $(grep -o "/run/colo/pods/[^ ]*/hugepages hugetlbfs [^ ]*" /proc/mounts | head -n1)"

say "real traffic between pods"
ip_of() { ip -n "demo-$1" -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1; }
ip netns exec demo-frontend ping -c 3 -i 0.2 -W 1 "$(ip_of cart)" | tail -n 2
ip netns exec demo-cart timeout 10 iperf3 -s -1 -B "$(ip_of cart)" >/dev/null 2>&1 &
server=$!
sleep 0.3
ip netns exec demo-frontend timeout 10 iperf3 -c "$(ip_of cart)" -t 2 -f g | grep -E 'sender|receiver'
wait "$server" || true

say "metrics (GET /metrics, excerpt)"
curl -sf "http://$HTTP/metrics" | grep -E '^colo_(pods|cni_requests_total|endpoints|hugepages_reserved_bytes|pod_requests_total|datapath_active|datapath_sockets_inserted_total|datapath_bytes_redirected_total)'

say "the runtime deletes the pods; colo-node forgets them"
for p in "${PODS[@]}"; do
  "$BIN/colo-chain" DEL --conflist "$WORK/net.conflist" --id "ctr-$p" --netns "/var/run/netns/demo-$p" \
    --cni-path "$BIN:$REF" --cache "$WORK/cache"
done
echo "  pods held now: $(curl -sf "http://$HTTP/debug/pods" | jq '.pods | length')"
say "colo-cni's log"
sed 's/^/  /' "$WORK/colo-cni.log"
