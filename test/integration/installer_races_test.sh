#!/usr/bin/env bash
# colo-cni-installer where the first installer lost data or broke pods: a primary that chains
# colo-cni itself (Cilium with cni.configMap, as colo's advice says), SIGKILL at every step of an
# edit, a primary's file away for a moment under --watch, two installers at once, the idle
# sidecar's writes, a half-written primary, and an upgrade from the first installer's backups.
# Each case ends with helm uninstall (decision "uninstall" + SIGTERM) and checks the node.
source "$(dirname "$0")/lib.sh"

INST=$COLO_BIN/colo-cni-installer
FIX=$COLO_FIXTURES/cni-confs
PC='{"failurePolicy":"open","timeoutMs":500}'
N=0
new_node() {
  N=$((N + 1))
  T=$WORK/node$N
  CONF=$T/net.d BIN=$T/bin RUN=$T/run
  mkdir -p "$CONF" "$BIN" "$RUN"
}
snapshot() { (cd "$1" && find . -mindepth 1 -printf '%P %y %l %m %U:%G\n' | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum); }
init_c() { "$INST" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$BIN" --conf-dir "$CONF" --plugin-config "$PC" --wait 5 --status-file "$RUN/chain.json" 2>>"$T/init.log"; }
# killed_at N: the init container, SIGKILLed at its Nth rename (1: the binary; then the state and
# the primary's file, in whichever order the installer writes them). Fails unless it was killed.
killed_at() {
  local rc=0
  strace -f -qq -o /dev/null -e trace=rename -e inject=rename:signal=KILL:when="$1" \
    "$INST" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$BIN" --conf-dir "$CONF" --plugin-config "$PC" --wait 5 2>/dev/null || rc=$?
  [[ $rc -eq 137 ]] || { echo "killed_at $1: not killed (rc $rc)"; return 1; }
}
WPIDS=()
watch_start() {
  "$INST" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$BIN" --conf-dir "$CONF" --plugin-config "${1:-$PC}" \
    --status-file "$RUN/chain.json" --watch --decision-file "$RUN/shutdown" 2>>"$T/watch.log" &
  WPID=$!
  WPIDS+=("$WPID")
}
stop_watchers() { for p in "${WPIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
on_exit stop_watchers
uninst() { echo uninstall >"$RUN/shutdown" && kill -TERM "$WPID" && wait "$WPID"; }
rewrite() { cp "$1" "$CONF/.new" && mv "$CONF/.new" "$2"; }
wait_for() { for _ in $(seq 1 60); do "$@" && return 0; sleep 0.05; done; return 1; }
jqq() { jq -e "$@" >/dev/null; }
clean() { ! grep -rlq colo-cni "$CONF" && test ! -e "$BIN/colo-cni"; }

# --- a primary that writes colo-cni into its own chain (colo's Cilium advice) owns that entry ---
new_node
F=$CONF/05-cilium.conflist
cp "$FIX/cilium.conflist" "$F"
init_c
watch_start
wait_for grep -q colo-cni "$F"
jq '.plugins = [.plugins[0], {"type":"colo-cni","failurePolicy":"closed","timeoutMs":2000}]' "$FIX/cilium.conflist" >"$T/cilium-cm"
rewrite "$T/cilium-cm" "$F"
sleep 1.5
check "Cilium's own colo-cni entry is left as Cilium wrote it (no fight)" cmp -s "$T/cilium-cm" "$F"
check "... said in the log" grep -q "rewritten with a colo-cni entry colo did not write" "$T/watch.log"
check "... and colo-cni counts as chained" jqq '.chained and .action == "foreign"' "$RUN/chain.json"
uninst
check "helm uninstall leaves Cilium's entry and file alone" cmp -s "$T/cilium-cm" "$F"
check "... and keeps the binary its chain names" test -x "$BIN/colo-cni"
# The same with a runnable primary: after uninstall a pod still starts through that chain.
new_node
BR=cbr$TAG
BR=${BR:0:15}
track_link "$BR"
F=$CONF/05-prim.conflist
prim() {
  jq -n --arg br "$BR" --arg d "$T/ipam" '{cniVersion:"1.0.0",name:"prim",plugins:[{type:"bridge",bridge:$br,isGateway:false,ipMasq:false,
    ipam:{type:"host-local",ranges:[[{subnet:"198.18.77.0/24"}]],dataDir:$d}}]}'
}
prim >"$F"
init_c
watch_start
wait_for grep -q colo-cni "$F"
prim | jq --arg s "$WORK/none/cni.sock" '.plugins += [{type:"colo-cni",failurePolicy:"open",timeoutMs:2000,agentSocket:$s}]' >"$T/prim-colo"
rewrite "$T/prim-colo" "$F"
sleep 1.5
uninst
rewrite "$T/prim-colo" "$F"  # the primary reconciles its file, as Cilium does
make_netns "ir$TAG"
run_pod() {
  "$COLO_BIN/colo-chain" ADD --conflist "$F" --id "c$N" --netns "/var/run/netns/ir$TAG" --cni-path "$BIN:$REF_PLUGINS" --cache "$T/cache" \
    --args "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=u;IgnoreUnknown=1" --annotations '{"colo.dev/enabled":"true"}' >"$T/add.json" 2>"$T/add.err"
}
check "after helm uninstall a pod still starts through the primary's chain (colo-cni found, fail-open)" run_pod

# --- SIGKILL at each step of an edit: the next start and uninstall still own colo's entry ---
for step in 2 3; do
  new_node
  F=$CONF/10-calico.conflist
  cp "$FIX/calico.conflist" "$F"
  BEFORE=$(snapshot "$CONF")
  check "(the init container SIGKILLed at its rename $step)" killed_at $step
  init_c
  watch_start
  sleep 1
  check "SIGKILL at write $step of the edit, restart: colo-cni chained, as colo's own" \
    bash -c "grep -q colo-cni '$F' && ! grep -q 'did not put it there' '$T/init.log' '$T/watch.log'"
  uninst
  check "... helm uninstall: the node as before, nothing names colo-cni" bash -c "[[ \"\$(cd '$CONF' && find . -mindepth 1 -printf '%P %y %l %m %U:%G\n' | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)\" == '$BEFORE' ]] && ! grep -rlq colo-cni '$CONF' && test ! -e '$BIN/colo-cni'"
done
# Re-chaining after the primary's upgrade, killed: the primary's new bytes come back at uninstall.
for step in 2 3; do
  new_node
  F=$CONF/10-calico.conflist
  cp "$FIX/calico.conflist" "$F"
  init_c
  jq -c '.plugins[0].mtu = 1450' "$FIX/calico.conflist" >"$T/calico-new"  # compact: a reformatting shows
  cp "$T/calico-new" "$F"
  check "(the init container SIGKILLed at its rename $step)" killed_at $step
  init_c
  watch_start
  sleep 1
  uninst
  check "SIGKILL at write $step of a re-chain: the primary's new bytes are back" cmp -s "$T/calico-new" "$F"
  check "... nothing names colo-cni, the binary is gone" clean
done

# --- the primary's file away for a moment under --watch (mv away and back) ---
new_node
F=$CONF/10-calico.conflist
cp "$FIX/calico.conflist" "$F"
BEFORE=$(snapshot "$CONF")
init_c
watch_start
sleep 1
mv "$F" "$T/away"
sleep 1.5
mv "$T/away" "$F"
sleep 1.5
check "a primary's file back after a moment away: colo-cni still colo's" \
  bash -c "grep -q colo-cni '$F' && ! grep -q 'did not put it there' '$T/watch.log'"
uninst
check "... helm uninstall: the node as before" test "$(snapshot "$CONF")" == "$BEFORE"
check "... nothing names colo-cni, the binary is gone" clean

# --- the idle sidecar writes nothing ---
new_node
cp "$FIX/calico.conflist" "$CONF/10-calico.conflist"
init_c
watch_start
sleep 1.5
syscw() { awk '/^syscw/ {print $2}' "/proc/$WPID/io"; }
W0=$(syscw)
sleep 5
W1=$(syscw)
check "an idle --watch sidecar makes no writes in 5 s (made $((W1 - W0)))" test $((W1 - W0)) -le 2
uninst

# --- two installers at once (two releases): the file stays valid, the state whole ---
new_node
F=$CONF/10-calico.conflist
cp "$FIX/calico.conflist" "$F"
BEFORE=$(snapshot "$CONF")
init_c
watch_start '{"failurePolicy":"open","timeoutMs":500}'
W1=$WPID
watch_start '{"failurePolicy":"closed","timeoutMs":900}'
W2=$WPID
BAD=0
for _ in $(seq 1 300); do jq -e . "$F" >/dev/null 2>&1 || BAD=$((BAD + 1)); sleep 0.01; done
check "two watchers: the primary's file never read invalid or missing ($BAD of 300)" test "$BAD" -eq 0
check "... the state is valid JSON" jqq '.entries | length == 1' "$CONF/.colo-cni-install.state"
check "... they back off from each other instead of rewriting forever" wait_for grep -q "another installer keeps changing colo-cni's settings" "$T/watch.log"
check "... no temporary file left" test -z "$(find "$CONF" -name '.colo-cni*tmp*')"
WPID=$W1 uninst
WPID=$W2 uninst
check "... helm uninstall of both: the node as before" test "$(snapshot "$CONF")" == "$BEFORE"
check "... nothing names colo-cni, the binary is gone" clean

# --- the init container meets a half-written primary: it waits for the rest ---
new_node
printf '{"cniVersion": "0.3.1", "name": "k8s-pod-network", "plugins": [' >"$CONF/10-calico.conflist"
"$INST" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$BIN" --conf-dir "$CONF" --wait 10 2>"$T/init.log" &
INIT=$!
sleep 1.5
cp "$FIX/calico.conflist" "$CONF/10-calico.conflist"
wait "$INIT" && RC=0 || RC=$?
check "a half-written primary: the init container waits and chains once it is whole" \
  bash -c "[[ $RC -eq 0 ]] && grep -q colo-cni '$CONF/10-calico.conflist'"
"$INST" uninstall --bin-dir "$BIN" --conf-dir "$CONF" 2>/dev/null

# --- upgrade from the first installer (its X.colo-backup), then helm uninstall ---
new_node
F=$CONF/10-calico.conflist
cp "$FIX/calico.conflist" "$F"
BEFORE=$(snapshot "$CONF")
cp "$F" "$F.colo-backup"
jq '.plugins += [{"type":"colo-cni","capabilities":{"io.kubernetes.cri.pod-annotations":true},"failurePolicy":"open","timeoutMs":500}]' "$F.colo-backup" >"$F"
jq -n --arg f "$F" --arg b "$F.colo-backup" '{action:"appended",file:$f,backup:$b}' >"$CONF/.colo-cni-install.state"
init_c
check "upgrade from the first installer: its backup is gone once migrated" test ! -e "$F.colo-backup"
check "... colo-cni is still colo's (updated in place, not foreign)" bash -c "! grep -q 'did not put it there' '$T/init.log' && test \$(grep -c colo-cni '$F') -eq 1"
watch_start
sleep 1
uninst
check "... helm uninstall: the node as before colo was ever installed" test "$(snapshot "$CONF")" == "$BEFORE"
check "... nothing names colo-cni, the binary is gone" clean

finish
