#!/usr/bin/env bash
# Every verb against the real colo-node, through the real bridge + host-local chain where a runtime
# would use it: GC with each attachment key shape; CHECK after colo.sock is deleted, the hugetlbfs
# mount is gone, or the pod is checked against another netns; ADDs and DELs while colo-node is
# down (spooled and applied at its start); a release that fails; a state dir that is read-only;
# two attachments in one netns; VERSION and opt-in parsing as a runtime sees them; a netns deleted
# and re-created at the same path with the same inode (spooled ADD, restore, CHECK: the cookie tells).
source "$(dirname "$0")/lib.sh"

# 2 MiB pages for one 4Mi pod: only ever raise the node's reservation.
[[ $(cat /proc/sys/vm/nr_hugepages) -ge 8 ]] || reserve_hugepages 8
BR=cvb$TAG
BR=${BR:0:15}
make_bridge "$BR"
OPEN=$WORK/open.conflist
CLOSED=$WORK/closed.conflist
write_conflist "$OPEN" colo-vb "$BR" 198.18.16.0/24 open false
write_conflist "$CLOSED" colo-vb "$BR" 198.18.16.0/24 closed false
ON='{"colo.dev/enabled":"true"}'
start_agent --hugepages-budget 16Mi
for p in a b c d e f g h i j k; do make_netns "cvb$TAG-$p"; done
ns() { echo "/var/run/netns/cvb$TAG-$1"; }
PODS=$WORK/run/pods
SPOOL=$WORK/run/cni/spool
# V11: colo-cni alone at spec 1.1.0 (no Debian runtime calls GC or STATUS).
V11='{"cniVersion":"1.1.0","name":"colo-vb","type":"colo-cni","agentSocket":"'$WORK/run/cni/cni.sock'","failurePolicy":"closed","logFile":"'$WORK/colo-cni.log'"}'
add11() { # add11 ID NETNS [POLICY]
  local conf
  conf=$(jq -c --arg p "${3:-closed}" '.failurePolicy=$p | .runtimeConfig={"io.kubernetes.cri.pod-annotations":{"colo.dev/enabled":"true"}} | .prevResult={"cniVersion":"1.1.0","ips":[{"address":"198.18.16.250/24"}]}' <<<"$V11")
  cni_direct ADD "$conf" CNI_CONTAINERID="$1" CNI_NETNS="$2" CNI_IFNAME=eth0 CNI_ARGS="K8S_POD_UID=uid-$1"
}
add11_check() { # add11_check ID NETNS: CHECK as add11 would have added it
  local conf
  conf=$(jq -c '.runtimeConfig={"io.kubernetes.cri.pod-annotations":{"colo.dev/enabled":"true"}} | .prevResult={"cniVersion":"1.1.0","ips":[{"address":"198.18.16.250/24"}]}' <<<"$V11")
  cni_direct CHECK "$conf" CNI_CONTAINERID="$1" CNI_NETNS="$2" CNI_IFNAME=eth0 CNI_ARGS="K8S_POD_UID=uid-$1"
}
del11() { cni_direct DEL "$(jq -c --arg p "${2:-closed}" '.failurePolicy=$p' <<<"$V11")" CNI_CONTAINERID="$1" CNI_IFNAME=eth0 CNI_ARGS="K8S_POD_UID=uid-$1"; }
gc11() { cni_direct GC "$(jq -c "$1" <<<"$V11")"; }
# renew_netns NAME: deletes the netns and re-creates it at the same path until the kernel hands the
# new one the old inode (it reuses the lowest free nsfs inode number); fails if it never does.
ino_dev() { stat -L -c '%i %d' "/var/run/netns/$1"; }
renew_netns() {
  local old
  old=$(ino_dev "$1")
  for _ in $(seq 1 40); do
    ip netns del "$1"
    sleep 0.1  # the old netns is freed by a kernel worker
    ip netns add "$1"
    ip -n "$1" link set lo up
    [[ $(ino_dev "$1") == "$old" ]] && return 0
  done
  return 1
}

# --- VERSION and the environment, as a runtime sees them ---
for v in 0.3.0 0.4.0 1.0.0 1.1.0; do
  check "VERSION asked in $v answers in $v" test "$(env -i CNI_COMMAND=VERSION "$COLO_BIN/colo-cni" <<<"{\"cniVersion\":\"$v\"}" | jq -r .cniVersion)" == "$v"
done
out=$(env -i CNI_COMMAND=ADD CNI_CONTAINERID=x "$COLO_BIN/colo-cni" <<<'{"cniVersion":"0.4.0","name":"n"}' || true)
check "an environment error carries the config's cniVersion" test "$(jq -r '"\(.code) \(.cniVersion)"' <<<"$out")" == "4 0.4.0"

# --- a chained ADD without CNI_PATH, CHECK of every kind ---
chain ADD "$CLOSED" ctra "$(ns a)" '{"colo.dev/enabled":"true","colo.dev/hugepages":"4Mi"}' >"$WORK/a.json"
check "pod a has its endpoint and a 4Mi mount" grep -q "$PODS/uid-ctra/hugepages hugetlbfs .*size=4194304" /proc/mounts
check "CHECK of a pod colo holds succeeds" chain CHECK "$CLOSED" ctra "$(ns a)" '{"colo.dev/enabled":"true","colo.dev/hugepages":"4Mi"}'
CHK_A=$(jq -c --arg s "$WORK/run/cni/cni.sock" '{cniVersion:"1.0.0",name:"colo-vb",type:"colo-cni",agentSocket:$s,failurePolicy:"open",
  runtimeConfig:{"io.kubernetes.cri.pod-annotations":{"colo.dev/enabled":"true"}},prevResult:.}' "$WORK/a.json")
check_a() { env -i CNI_COMMAND=CHECK CNI_CONTAINERID=ctra CNI_NETNS="$1" CNI_IFNAME=eth0 CNI_ARGS="K8S_POD_UID=uid-ctra" "$COLO_BIN/colo-cni" <<<"$CHK_A"; }
check "CHECK without CNI_PATH succeeds" check_a "$(ns a)"
out=$(check_a "$(ns b)" || true)
check "CHECK against another netns fails, even under failurePolicy open (code 7)" test "$(jq .code <<<"$out")" -eq 7
mv "$PODS/uid-ctra/colo.sock" "$WORK/colo.sock.aside"
out=$(check_a "$(ns a)" || true)
check "CHECK after colo.sock is deleted fails (code 3, says colo.sock)" bash -c "[[ \$(jq .code <<<'$out') -eq 3 && '$out' == *colo.sock* ]]"
mv "$WORK/colo.sock.aside" "$PODS/uid-ctra/colo.sock"
check "and passes again once it is back" check_a "$(ns a)"
umount -l "$PODS/uid-ctra/hugepages"
out=$(check_a "$(ns a)" || true)
check "CHECK after the hugetlbfs mount is gone fails (code 3, says hugetlbfs)" bash -c "[[ \$(jq .code <<<'$out') -eq 3 && '$out' == *hugetlbfs* ]]"
mount -t hugetlbfs -o size=2M none "$PODS/uid-ctra/hugepages"
out=$(check_a "$(ns a)" || true)
check "CHECK with a mount of the wrong size fails (code 7)" test "$(jq .code <<<"$out")" -eq 7
umount -l "$PODS/uid-ctra/hugepages"
mount -t hugetlbfs -o size=4M none "$PODS/uid-ctra/hugepages"
check "and passes with the right size" check_a "$(ns a)"
chain ADD "$CLOSED" ctrb "$(ns b)" '{"colo.dev/enabled":"false"}' >/dev/null
check "CHECK right after the ADD of a pod that did not opt in succeeds" chain CHECK "$CLOSED" ctrb "$(ns b)" '{"colo.dev/enabled":"false"}'
chain ADD "$CLOSED" ctrc "$(ns c)" >/dev/null
check "CHECK of a pod whose runtime passed no annotations (not held) succeeds" chain CHECK "$CLOSED" ctrc "$(ns c)"
chain ADD "$CLOSED" ctrd "$(ns d)" '{"colo.dev/enabled":"yes"}' >/dev/null
check "'yes' is not understood: not held" test "$(agent_get /debug/pods | jq '[.pods[] | select(.key=="uid-ctrd")] | length')" -eq 0
check "and colo-cni's log says so" grep -q "value 'yes' is not understood" "$WORK/colo-cni.log"
chain ADD "$CLOSED" ctre "$(ns e)" '{"colo.dev/enabled":"TRUE"}' >/dev/null
check "'TRUE' opts in (ParseBool)" test -S "$PODS/uid-ctre/colo.sock"

# --- two attachments in one netns ---
check "a second attachment of pod e's sandbox into its netns succeeds" chain ADD "$CLOSED" ctre "$(ns e)" '{"colo.dev/enabled":"TRUE"}' --ifname net1
check "both attachments are held on one pod" test "$(agent_get /debug/pods | jq -r '.pods[] | select(.key=="uid-ctre") | .attachments | length')" == 2
chain DEL "$CLOSED" ctre "$(ns e)" "" >/dev/null
check "DEL of the first keeps the endpoint" test -S "$PODS/uid-ctre/colo.sock"
chain DEL "$CLOSED" ctre "$(ns e)" "" --ifname net1 >/dev/null
check "DEL of the last removes it" test ! -e "$PODS/uid-ctre"

# --- GC with each key shape ---
add11 g1 "$(ns g)" >/dev/null
add11 g2 "$(ns h)" >/dev/null
keys_gc() { agent_get /debug/pods | jq -r '.pods[].key' | grep -c '^uid-g' || true; }
check "two pods for GC" test "$(keys_gc)" -eq 2
check "GC with neither key succeeds" gc11 '.'
check "GC with neither key released nothing" test "$(keys_gc)" -eq 2
check "and logged why" grep -q "neither cni.dev/valid-attachments nor cni.dev/attachments" "$WORK/colo-cni.log"
KEEP='[{"containerID":"g1","ifname":"eth0"},{"containerID":"ctra","ifname":"eth0"},{"containerID":"ctrb","ifname":"eth0"},{"containerID":"ctrc","ifname":"eth0"},{"containerID":"ctrd","ifname":"eth0"}]'
check "GC with only the older key cni.dev/attachments (libcni 1.2.0-1.2.2)" gc11 ".\"cni.dev/attachments\"=$KEEP"
check "released only the attachment not listed" test "$(agent_get /debug/pods | jq -r '[.pods[].key] | sort | join(" ")')" == "uid-ctra uid-g1"
check "pod a kept its endpoint and mount" grep -q "$PODS/uid-ctra/hugepages hugetlbfs" /proc/mounts
check "GC with cni.dev/valid-attachments" gc11 ".\"cni.dev/valid-attachments\"=[{\"containerID\":\"ctra\",\"ifname\":\"eth0\"}]"
check "released g1" test "$(agent_get /debug/pods | jq -r '[.pods[].key] | join(" ")')" == "uid-ctra"

# --- a release that fails is kept, counted and retried ---
add11 r1 "$(ns i)" >/dev/null
touch "$PODS/uid-r1/left-behind"  # rmdir fails: ENOTEMPTY
check "DEL while the release fails still succeeds (recorded durably)" del11 r1
check "the pod is kept as pending" test "$(agent_get /debug/pods | jq -r '.pods[] | select(.key=="uid-r1") | .releasePending')" == true
check "and counted" test "$(metric 'colo_pod_release_failures_total{cause="del"}')" == 1
gc11 '."cni.dev/valid-attachments"=[{"containerID":"ctra","ifname":"eth0"}]' >/dev/null
check "GC does not report it as released" grep -q "released 0 stale attachments, 1 still pending" "$WORK/colo-cni.log"
rm "$PODS/uid-r1/left-behind"
gc11 '."cni.dev/valid-attachments"=[{"containerID":"ctra","ifname":"eth0"}]' >/dev/null
check "the next GC finishes it" test ! -e "$PODS/uid-r1"
check "and the registry forgot it" test "$(agent_get /debug/pods | jq -r '[.pods[].key] | join(" ")')" == "uid-ctra"

# --- a DEL while the state dir is read-only ---
add11 ro1 "$(ns j)" >/dev/null
mount --bind "$WORK/state" "$WORK/state"
mount -o remount,bind,ro "$WORK/state"
check "DEL while the state dir is read-only succeeds (spooled)" del11 ro1
check "and is in the spool" test "$(find "$SPOOL" -name '*.json' | wc -l)" -eq 1
umount "$WORK/state"
stop_agent
start_agent --hugepages-budget 16Mi
check "after a restart the pod does not come back" test "$(agent_get /debug/pods | jq -r '[.pods[].key] | join(" ")')" == "uid-ctra"
check "the spool was applied and emptied" test "$(find "$SPOOL" -name '*.json' | wc -l)" -eq 0

# --- colo-node killed between ADD and DEL; ADD and DEL while it is down ---
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=""
check "agent down: DEL of pod a succeeds (open)" chain DEL "$OPEN" ctra "$(ns a)" "$ON"
check "agent down: DEL of pod a succeeds (closed)" chain DEL "$CLOSED" ctra "$(ns a)" "$ON"
check "the DEL is spooled" test "$(find "$SPOOL" -name '*.json' | wc -l)" -ge 1
check "agent down, open: ADD of pod f succeeds" chain ADD "$OPEN" ctrf "$(ns f)" "$ON"
check "agent down, closed: ADD of pod b fails (11)" fails chain ADD "$CLOSED" ctrb2 "$(ns b)" "$ON"
check "agent down, closed: a pod with null annotations starts" chain ADD "$CLOSED" ctrn "$(ns k)" null
add11 late "$(ns g)" open >/dev/null
# The same path, another netns, and (unless another netns took it meanwhile) the same inode and
# device: the spooled ADD must not be adopted into it.
if renew_netns "cvb$TAG-g"; then LATE_REUSED=1; else LATE_REUSED=0; fi
start_agent --hugepages-budget 16Mi
check "restart: the missed DEL released pod a (mount gone)" bash -c "! grep -q '$PODS/uid-ctra/hugepages' /proc/mounts && test ! -e $PODS/uid-ctra"
check "restart: the missed ADD of pod f was adopted" test "$(agent_get /debug/pods | jq -r '[.pods[].key] | join(" ")')" == "uid-ctrf"
check "pod f's @colo answers" test "$(ip netns exec "cvb$TAG-f" "$COLO_BIN/coloctl" hello | jq -r .identity.name)" == pod-ctrf
check "the ADD into a replaced netns was not adopted" test "$(metric 'colo_spool_records_total{op="cni.add",result="netns_gone_or_replaced"}')" == 1
if ((LATE_REUSED)); then
  check "the replaced netns (same inode and device) got no endpoint for the late ADD" test ! -e "$PODS/uid-late"
  check "and its @colo does not answer" fails ip netns exec "cvb$TAG-g" "$COLO_BIN/coloctl" hello
else
  echo "SKIP: the kernel gave the re-created netns g another inode; the same-inode spool case was not exercised"
fi
check "the spool is empty" test "$(find "$SPOOL" -name '*.json' | wc -l)" -eq 0
check "a new ADD into pod a's old netns works (no EADDRINUSE)" chain ADD "$CLOSED" ctra2 "$(ns a)" "$ON"
stop_agent
start_agent --hugepages-budget 16Mi
check "nothing is applied twice at the next start" test "$(agent_get /debug/pods | jq -r '[.pods[].key] | sort | join(" ")')" == "uid-ctra2 uid-ctrf"

# --- a held pod's netns replaced at the same path (same inode and device) while colo-node is down ---
add11 reuse "$(ns h)" >/dev/null
check "pod reuse is held" test -S "$PODS/uid-reuse/colo.sock"
add11 legacy "$(ns i)" >/dev/null
stop_agent
# pod legacy's state as the colo-node before netns cookies wrote it: inode and device only.
jq 'del(.netnsCookie)' "$WORK/state/pods/uid-legacy.json" >"$WORK/legacy.json" && mv "$WORK/legacy.json" "$WORK/state/pods/uid-legacy.json"
if renew_netns "cvb$TAG-h"; then
  start_agent --hugepages-budget 16Mi
  check "restart: a pod whose netns was replaced (same inode and device) is released" \
    test "$(agent_get /debug/pods | jq '[.pods[] | select(.key=="uid-reuse")] | length')" -eq 0
  check "the replaced netns has no @colo endpoint" fails ip netns exec "cvb$TAG-h" "$COLO_BIN/coloctl" hello
  check "CHECK of the pod against the replaced netns fails" fails add11_check reuse "$(ns h)"
else
  echo "SKIP: the kernel gave the re-created netns h another inode; the same-inode restore case was not exercised"
  start_agent --hugepages-budget 16Mi
  del11 reuse >/dev/null
fi
check "restart: a pod whose state has no netns cookie is released, not trusted on inode and device" \
  test "$(agent_get /debug/pods | jq '[.pods[] | select(.key=="uid-legacy")] | length')" -eq 0
check "and the log says why" grep -q "pod uid-legacy .*no netns cookie" "$WORK/agent.log"
check "a restored pod's state records the netns cookie" \
  test "$(agent_get /debug/pods | jq '[.pods[] | select(.netnsCookie > 0)] | length')" -eq 2
for c in ctrf ctra2; do chain DEL "$OPEN" "$c" "$(ns ${c:3:1})" >/dev/null; done
check "everything released" test "$(agent_get /debug/pods | jq '.pods | length')" -eq 0

finish
