#!/usr/bin/env bash
# Per-pod endpoints: @colo inside the pod's netns and nowhere else, the filesystem socket with its
# netns check, hugetlbfs mounts within the node budget, and their teardown.
source "$(dirname "$0")/lib.sh"

reserve_hugepages 32  # 64 MiB of 2 MiB pages; restored at exit
BR=cep$TAG
BR=${BR:0:15}
make_bridge "$BR"
OPEN=$WORK/open.conflist
CLOSED=$WORK/closed.conflist
write_conflist "$OPEN" colo-ep "$BR" 198.18.3.0/24 open false
write_conflist "$CLOSED" colo-ep "$BR" 198.18.3.0/24 closed false
start_agent --hugepages-budget 16Mi
for p in a b c d e f; do make_netns "cep$TAG-$p"; done
ns() { echo "/var/run/netns/cep$TAG-$1"; }
in_pod() { local p=$1; shift; ip netns exec "cep$TAG-$p" "$@"; }
hello() { local p=$1; shift; in_pod "$p" "$COLO_BIN/coloctl" hello "$@"; }
PODS=$WORK/run/pods

chain ADD "$CLOSED" ctra "$(ns a)" '{"colo.dev/enabled":"true","colo.dev/hugepages":"8Mi"}' >/dev/null
chain ADD "$CLOSED" ctrb "$(ns b)" '{"colo.dev/enabled":"true"}' >/dev/null
chain ADD "$CLOSED" ctrc "$(ns c)" '{"colo.dev/enabled":"false"}' >/dev/null

# --- identity over @colo ---
check "a process in pod a gets pod a's identity from @colo" test "$(hello a | jq -r '.identity.name')" == pod-ctra
check "the reply carries node, uid and address" \
  test "$(hello a | jq -r '"\(.identity.node) \(.identity.uid) \(.identity.ips[0] | startswith("198.18.3."))"')" == "it-$TAG uid-ctra true"
check "the agent recorded the caller's SO_PEERCRED" test "$(hello a | jq -r '.peer.uid')" == 0
check "pod b gets its own identity, not a's" test "$(hello b | jq -r '.identity.name')" == pod-ctrb
check "a pod that has not opted in has no @colo" bash -c "! ip netns exec cep$TAG-c $COLO_BIN/coloctl hello 2>/dev/null"
check "the node's netns has no @colo" bash -c "! $COLO_BIN/coloctl hello 2>/dev/null"
check "a non-root user in pod a gets pod a's identity" \
  test "$(in_pod a setpriv --reuid=65534 --regid=65534 --clear-groups "$COLO_BIN/coloctl" hello | jq -r '.identity.name,.peer.uid' | tr '\n' ' ')" == "pod-ctra 65534 "

# --- the filesystem endpoint ---
check "pod directory is root-owned 0755" test "$(stat -c '%U %a' "$PODS/uid-ctra")" == "root 755"
check "colo.sock is a socket, mode 0666" test "$(stat -c '%F %a' "$PODS/uid-ctra/colo.sock")" == "socket 666"
check "pod a reaches its filesystem endpoint" test "$(hello a --socket "$PODS/uid-ctra/colo.sock" | jq -r '.identity.name')" == pod-ctra
check "a non-root user in pod a reaches it too" test "$(in_pod a setpriv --reuid=65534 --regid=65534 --clear-groups \
  "$COLO_BIN/coloctl" hello --socket "$PODS/uid-ctra/colo.sock" | jq -r .identity.name)" == pod-ctra
out=$(hello b --socket "$PODS/uid-ctra/colo.sock" || true)
check "pod b cannot pass for pod a through a's colo.sock" test "$(jq -r '.error.code' <<<"$out")" == permission_denied
check "nor can the node" bash -c "! $COLO_BIN/coloctl hello --socket $PODS/uid-ctra/colo.sock >/dev/null 2>&1"

# --- hugepages ---
check "pod a has a hugetlbfs mount" test "$(stat -f -c %T "$PODS/uid-ctra/hugepages")" == hugetlbfs
check "its size is the annotation's 8Mi" grep -q "$PODS/uid-ctra/hugepages hugetlbfs .*size=8388608" /proc/mounts
check "pod b asked for none and has none" test ! -e "$PODS/uid-ctrb/hugepages"
check "a process writes 8Mi into pod a's hugepages" in_pod a fallocate -l 8MiB "$PODS/uid-ctra/hugepages/buf"
check "and is stopped at the size limit" bash -c "! ip netns exec cep$TAG-a fallocate -l 2MiB $PODS/uid-ctra/hugepages/more 2>/dev/null"
rm -f "$PODS/uid-ctra/hugepages/buf"

out=$(chain ADD "$CLOSED" ctrd "$(ns d)" '{"colo.dev/enabled":"true","colo.dev/hugepages":"16Mi"}' || true)
check "budget exhausted, failurePolicy closed: ADD fails" test "$(jq -r .code <<<"$out")" == 11
check "and the message names the shortfall" grep -q "has 8Mi left: short by 8Mi" <<<"$(jq -r .msg <<<"$out")"
check "and nothing was left for that pod" test ! -e "$PODS/uid-ctrd"
chain DEL "$CLOSED" ctrd "$(ns d)" >/dev/null
check "budget exhausted, failurePolicy open: ADD succeeds" \
  chain ADD "$OPEN" ctre "$(ns e)" '{"colo.dev/enabled":"true","colo.dev/hugepages":"16Mi"}'
check "the pod has its endpoint" test "$(hello e | jq -r '.identity.name')" == pod-ctre
check "but no hugepages" test "$(hello e | jq -r '.hugepages')" == null
check "colo-cni logged why" grep -q "started without hugepages" "$WORK/colo-cni.log"
out=$(chain ADD "$CLOSED" ctrf "$(ns f)" '{"colo.dev/enabled":"true","colo.dev/hugepages":"lots"}' || true)
check "a malformed quantity is refused by name" grep -q "'lots' is not a byte quantity" <<<"$(jq -r .msg <<<"$out")"
chain DEL "$CLOSED" ctrf "$(ns f)" >/dev/null
check "refusals are counted" test "$(metric 'colo_hugepages_refused_total{reason="budget"}'),$(metric 'colo_hugepages_refused_total{reason="malformed"}')" == "2,1"
check "the node's reservation is 8Mi" test "$(metric colo_hugepages_reserved_bytes)" == 8388608

# --- DEL tears it all down ---
chain DEL "$CLOSED" ctra "$(ns a)" >/dev/null
check "after DEL @colo is gone from pod a" bash -c "! ip netns exec cep$TAG-a $COLO_BIN/coloctl hello >/dev/null 2>&1"
check "its hugepage mount is gone" bash -c "! grep -q $PODS/uid-ctra /proc/mounts"
check "its directory is gone" test ! -e "$PODS/uid-ctra"
check "the reservation is released" test "$(metric colo_hugepages_reserved_bytes)" == 0
for p in b c e; do chain DEL "$CLOSED" "ctr$p" "$(ns $p)" >/dev/null; done
check "no pod directories remain" test -z "$(ls -A "$PODS")"

finish
