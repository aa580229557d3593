#!/usr/bin/env bash
# colo-cni-installer as the DaemonSet runs it, on host-like directories holding configurations
# shaped like the primary CNIs' own (test/fixtures/cni-confs): install, then uninstall, and the
# node must be as it was: no file names colo-cni, every primary back byte for byte with its name,
# mode, owner and links, and the binary gone unless some configuration still names it. Then the
# cases that broke nodes: an earlier file appearing, a primary deleted and recreated under
# --watch, 0.2.0 primaries, upgrades, foreign entries, a primary that keeps rewriting its file,
# a conf dir that is still empty, a read-only one, and bad command lines.
source "$(dirname "$0")/lib.sh"

INST=$COLO_BIN/colo-cni-installer
FIX=$COLO_FIXTURES/cni-confs
BIN=$WORK/host/opt/cni/bin
mkdir -p "$BIN"
N=0
# new_node: a fresh conf dir in $CONF (and an empty bin dir).
new_node() {
  N=$((N + 1))
  CONF=$WORK/host$N/etc/cni/net.d
  mkdir -p "$CONF"
  rm -f "$BIN/colo-cni"
}
# snapshot DIR: every entry with its type, link target, mode, owner and content hash.
snapshot() {
  (cd "$1" && find . -mindepth 1 -printf '%P %y %l %m %U:%G\n' | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}
do_install() { "$INST" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$BIN" --conf-dir "$CONF" "$@"; }
do_uninstall() { "$INST" uninstall --bin-dir "$BIN" --conf-dir "$CONF"; }
# active DIR: the file runtimes load (lexically first *.conf, *.conflist, *.json).
active() { find "$1" -maxdepth 1 \( -name '*.conf' -o -name '*.conflist' -o -name '*.json' \) \( -type f -o -xtype f \) -printf '%f\n' | LC_ALL=C sort | head -n1; }
chained() { jq -e '[.. | objects | select(.type == "colo-cni")] | length == 1' "$CONF/$(active "$CONF")" >/dev/null 2>&1; }
jqq() { jq -e "$@" >/dev/null; }
nothing_names_colo() { ! grep -rlq colo-cni "$CONF" "$@"; }

# --- every primary: install, uninstall, the node as it was ---
while read -r fixture as mode owner; do
  new_node
  cp "$FIX/$fixture" "$CONF/$as"
  chmod "$mode" "$CONF/$as"
  chown "$owner" "$CONF/$as"
  BEFORE=$(snapshot "$CONF")
  do_install --plugin-config '{"failurePolicy":"open"}' 2>"$WORK/out" || true
  check "$fixture as $as: chained into what runtimes load ($(active "$CONF"))" chained
  check "$fixture: the binary is the real plugin" bash -c "'$BIN/colo-cni' --version | grep -q colo-cni"
  do_uninstall 2>>"$WORK/out"
  check "$fixture: after uninstall every file is back (bytes, names, mode $mode, owner $owner)" test "$(snapshot "$CONF")" == "$BEFORE"
  check "$fixture: nothing names colo-cni, the binary is gone" bash -c "! grep -rlq colo-cni '$CONF' && test ! -e '$BIN/colo-cni'"
done <<'EOF'
calico.conflist 10-calico.conflist 0644 0:0
cilium.conflist 05-cilium.conflist 0600 0:0
cilium-chained.conflist 05-cilium.conflist 0644 0:0
cilium-legacy.conf 05-cilium.conf 0644 0:0
flannel.conflist 10-flannel.conflist 0644 1234:1234
flannel-legacy.conf 10-flannel.conf 0600 1234:1234
kindnet.conflist 10-kindnet.conflist 0644 0:0
aws-vpc-cni.conflist 10-aws.conflist 0644 0:0
antrea.conflist 10-antrea.conflist 0644 0:0
weave.conflist 10-weave.conflist 0644 0:0
multus-thick.conf 00-multus.conf 0600 0:0
containerd.conflist 10-containerd-net.conflist 0644 0:0
podman.conflist 87-podman-bridge.conflist 0644 0:0
bridge.conf 10-bridge.json 0640 0:1234
EOF

# --- X.conf beside X.conflist; a symlinked config ---
new_node
cp "$FIX/bridge.conf" "$CONF/10-x.conf"
cp "$FIX/calico.conflist" "$CONF/10-x.conflist"
mkdir -p "$WORK/cm$N"
cp "$FIX/kindnet.conflist" "$WORK/cm$N/kindnet.conflist"
ln -s "$WORK/cm$N/kindnet.conflist" "$CONF/20-kindnet.conflist"
BEFORE=$(snapshot "$CONF")
TARGET_BEFORE=$(sha256sum <"$WORK/cm$N/kindnet.conflist")
do_install 2>/dev/null
check "X.conf beside X.conflist: colo's own 10-x.colo.conflist is loaded, 10-x.conflist untouched" \
  bash -c "[[ \$(jq -r '.plugins[-1].type' '$CONF/10-x.colo.conflist') == colo-cni ]] && ! grep -q colo-cni '$CONF/10-x.conflist'"
do_uninstall 2>/dev/null
check "... and after uninstall both are as they were" test "$(snapshot "$CONF")" == "$BEFORE"
new_node
ln -s "$WORK/cm$((N - 1))/kindnet.conflist" "$CONF/20-kindnet.conflist"
BEFORE=$(snapshot "$CONF")
do_install 2>/dev/null
check "a symlinked config stays a link; its target holds colo-cni" bash -c "test -L '$CONF/20-kindnet.conflist' && grep -q colo-cni '$WORK/cm$((N - 1))/kindnet.conflist'"
do_uninstall 2>/dev/null
check "... uninstall restores the target byte for byte, the link stays" \
  bash -c "[[ \$(sha256sum <'$WORK/cm$((N - 1))/kindnet.conflist') == '$TARGET_BEFORE' ]] && test -L '$CONF/20-kindnet.conflist'"
check "... and the directory is as it was" test "$(snapshot "$CONF")" == "$BEFORE"

# --- a 0.2.0 primary is refused, clearly ---
new_node
cp "$FIX/legacy-0.2.0.conf" "$CONF/10-mynet.conf"
BEFORE=$(snapshot "$CONF")
do_install --status-file "$WORK/status.json" 2>"$WORK/out" && RC=0 || RC=$?
check "0.2.0: refused with a clear message" grep -q 'cniVersion "0.2.0"; chaining needs .*NOT chained' "$WORK/out"
check "... the installer does not crash-loop on it (exit 0; the sidecar and colo-node report it)" test "$RC" -eq 0
check "... the status file says not chained" jqq '.chained == false and (.message | test("0.2.0"))' "$WORK/status.json"
check "... and nothing was touched" test "$(snapshot "$CONF")" == "$BEFORE"
do_uninstall 2>/dev/null
check "... uninstall removes the binary" test ! -e "$BIN/colo-cni"

# --- upgrade: our entry's settings change in place; a foreign entry is left alone ---
new_node
cp "$FIX/calico.conflist" "$CONF/10-calico.conflist"
ORIGINAL=$(sha256sum <"$CONF/10-calico.conflist")
do_install --plugin-config '{"failurePolicy":"open","timeoutMs":500}' 2>/dev/null
do_install --plugin-config '{"failurePolicy":"closed","timeoutMs":900}' --status-file "$WORK/status.json" 2>"$WORK/out"
check "upgrade: our entry is updated in place (one colo-cni, last, new settings)" \
  test "$(jq -c '[(.plugins | length), .plugins[-1].failurePolicy, .plugins[-1].timeoutMs]' "$CONF/10-calico.conflist")" == '[4,"closed",900]'
check "... said in the log" grep -q "(updated)" "$WORK/out"
do_uninstall 2>/dev/null
check "... and uninstall still restores calico's bytes" test "$(sha256sum <"$CONF/10-calico.conflist")" == "$ORIGINAL"
new_node
cp "$FIX/already-chained.conflist" "$CONF/10-x.conflist"
ORIGINAL=$(sha256sum <"$CONF/10-x.conflist")
do_install --plugin-config '{"failurePolicy":"open"}' 2>"$WORK/out"
check "a colo-cni entry colo did not write is left alone, and said so" grep -q "did not put it there: left as it is" "$WORK/out"
check "... its settings unchanged" test "$(sha256sum <"$CONF/10-x.conflist")" == "$ORIGINAL"
do_uninstall 2>"$WORK/out"
check "uninstall keeps the binary while a config names it" test -x "$BIN/colo-cni"
check "... and says which" grep -q "colo-cni binary kept .* still named by $CONF/10-x.conflist" "$WORK/out"
mkdir -p "$CONF/multus.d"
mv "$CONF/10-x.conflist" "$CONF/multus.d/delegate.conflist"
do_uninstall 2>/dev/null
check "... also when the config that names it is in a subdirectory" test -x "$BIN/colo-cni"
rm "$CONF/multus.d/delegate.conflist"
do_uninstall 2>/dev/null
check "... and removes it once none does" test ! -e "$BIN/colo-cni"

# --- the conf dir is still empty (a new node): wait, bounded, with a log line every few seconds ---
new_node
"$INST" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$BIN" --conf-dir "$CONF" --wait 20 --status-file "$WORK/status.json" 2>"$WORK/wait.log" &
WAITER=$!
sleep 5.5
cp "$FIX/flannel.conflist" "$CONF/.new" && mv "$CONF/.new" "$CONF/10-flannel.conflist"
wait "$WAITER" && RC=0 || RC=$?
check "install --wait: succeeds once the primary writes its config" test "$RC" -eq 0
check "... chained" chained
check "... having logged while waiting (twice in 5 s)" test "$(grep -c 'no CNI configuration in .* yet' "$WORK/wait.log")" -ge 2
check "... the status file says chained" jqq '.chained == true' "$WORK/status.json"
do_uninstall 2>/dev/null
new_node
do_install --wait 1 2>"$WORK/out" && RC=0 || RC=$?
check "install --wait 1 on an empty dir fails after 1 s, saying why" bash -c "[[ $RC -eq 1 ]] && grep -q 'gave up after 1 s' '$WORK/out'"

# --- bad command lines are usage errors ---
for args in "frobnicate --bin-dir $BIN --conf-dir $CONF" "install --bin-dir $BIN --conf-dir $CONF --wath" \
  "uninstall --bin-dir $BIN --conf-dir $CONF --watch" "install --bin-dir $BIN" "install --bin-dir $BIN --conf-dir $CONF extra" \
  "install --bin-dir $BIN --conf-dir $CONF --wait soon" "install --bin-dir $BIN --conf-dir $CONF --plugin-config [1]"; do
  # shellcheck disable=SC2086
  "$INST" $args >"$WORK/out" 2>&1 && RC=0 || RC=$?
  check "usage error (exit 2, usage shown): $(echo "$args" | sed "s#$WORK#W#g")" bash -c "[[ $RC -eq 2 ]] && grep -q '^usage: colo-cni-installer' '$WORK/out'"
done

# --- a read-only configuration directory ---
RO=$WORK/ro
mkdir -p "$RO"
mount -t tmpfs colo-it-ro "$RO"
cp "$FIX/flannel.conflist" "$RO/10-flannel.conflist"
mount -o remount,ro "$RO"
OUT=$("$INST" install --bin-dir "$BIN" --conf-dir "$RO" 2>&1 || true)
check "a read-only directory is a clear error" grep -q "Read-only file system" <<<"$OUT"
check "and the file is left as it was" bash -c "! grep -q colo-cni '$RO/10-flannel.conflist'"
umount "$RO"

# --- --watch: rewrites, a primary deleted and recreated, an earlier file, a fight ---
new_node
cp "$FIX/kindnet.conflist" "$CONF/10-kindnet.conflist"
cp "$FIX/kindnet.conflist" "$WORK/kindnet.orig"
BEFORE=$(snapshot "$CONF")
"$INST" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$BIN" --conf-dir "$CONF" --watch --status-file "$WORK/status.json" 2>"$WORK/watch.log" &
WATCHER=$!
stop_watcher() { kill -TERM "$WATCHER" 2>/dev/null || true; }
on_exit stop_watcher
wait_for() { for _ in $(seq 1 100); do "$@" && return 0; sleep 0.05; done; return 1; }
# Long enough for a back-off pause the fight above started (2 s, doubling) to end.
wait_long() { for _ in $(seq 1 600); do "$@" && return 0; sleep 0.05; done; return 1; }
rewrite() { cp "$1" "$CONF/.new" && mv "$CONF/.new" "$CONF/$2"; }
check "--watch chains at start" wait_for chained
check "the status file says chained, and where" wait_for jqq --arg f "$CONF/10-kindnet.conflist" '.chained and .file == $f' "$WORK/status.json"
rewrite "$FIX/kindnet.conflist" 10-kindnet.conflist
check "when the primary rewrites its file, colo-cni is chained again" wait_for chained
rm "$CONF/10-kindnet.conflist"
check "the primary's file deleted: the status file says not chained" wait_for jqq '.chained == false' "$WORK/status.json"
sleep 0.3
rewrite "$WORK/kindnet.orig" 10-kindnet.conflist
check "... recreated: chained again" wait_for chained
rewrite "$FIX/multus-thick.conf" 00-multus.conf
check "an earlier file (00-multus.conf) appears: colo moves into what runtimes load now" \
  wait_for bash -c "[[ \$(jq -r '.plugins[-1].type' '$CONF/00-multus.colo.conflist' 2>/dev/null) == colo-cni ]]"
check "... and kindnet's file is kindnet's again, byte for byte" wait_for cmp -s "$CONF/10-kindnet.conflist" "$WORK/kindnet.orig"
check "... 00-multus.conf itself untouched" cmp -s "$CONF/00-multus.conf" "$FIX/multus-thick.conf"
rm "$CONF/00-multus.conf"
check "Multus gone: colo is back in kindnet's file, its generated file gone" \
  wait_for bash -c "grep -q colo-cni '$CONF/10-kindnet.conflist' && test ! -e '$CONF/00-multus.colo.conflist'"
# A primary that rewrites its file on every change (Cilium): colo backs off, and keeps trying.
cp "$FIX/cilium.conflist" "$WORK/cilium.orig"
rewrite "$WORK/cilium.orig" 05-cilium.conflist
for _ in 1 2 3; do
  wait_for grep -q colo-cni "$CONF/05-cilium.conflist"
  rewrite "$WORK/cilium.orig" 05-cilium.conflist
done
check "an edit reverted again and again is reported, with a pause instead of giving up" \
  wait_for grep -q "removed colo-cni from .*05-cilium.conflist 3 times within 60 s; backing off" "$WORK/watch.log"
check "the advice is Cilium's documented way to chain a plugin" grep -q "cni.configMap=.*cni.customConf=true" "$WORK/watch.log"
check "during the pause the status file says not chained, and why" wait_for jqq '.chained == false and .action == "backoff"' "$WORK/status.json"
check "after the pause colo-cni is chained again (it never gives up)" bash -c "for _ in \$(seq 1 80); do grep -q colo-cni '$CONF/05-cilium.conflist' && exit 0; sleep 0.05; done; exit 1"
rm "$CONF/05-cilium.conflist"
check "kindnet loaded again: chained there" wait_long chained
kill -TERM "$WATCHER"
wait "$WATCHER" && RC=0 || RC=$?
check "the watcher exits 0 on SIGTERM and leaves colo-cni chained" bash -c "[[ $RC -eq 0 ]] && grep -q colo-cni '$CONF/10-kindnet.conflist'"
do_uninstall 2>/dev/null
check "after all that, uninstall leaves the node as it was: no file names colo-cni" nothing_names_colo
check "... kindnet byte for byte, nothing of colo left" test "$(snapshot "$CONF")" == "$BEFORE"
check "... the binary is gone" test ! -e "$BIN/colo-cni"

finish
