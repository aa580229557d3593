#!/usr/bin/env bash
# colo-cni-installer as the DaemonSet runs it: install and uninstall on a host-like layout, a
# read-only configuration directory, and --watch against a primary CNI that rewrites its file,
# once (colo-cni comes back) and again and again (the installer stops and says why).
source "$(dirname "$0")/lib.sh"

INST=$COLO_BIN/colo-cni-installer
FIX=$COLO_FIXTURES/cni-confs
HOST_BIN=$WORK/host/opt/cni/bin
HOST_CONF=$WORK/host/etc/cni/net.d
mkdir -p "$HOST_BIN" "$HOST_CONF"
cp "$FIX/calico.conflist" "$HOST_CONF/10-calico.conflist"
ORIGINAL=$(sha256sum <"$HOST_CONF/10-calico.conflist")

check "install copies colo-cni and chains it" "$INST" install --bin-source "$COLO_BIN/colo-cni" --bin-dir "$HOST_BIN" --conf-dir "$HOST_CONF"
check "the host binary is the real plugin" bash -c "'$HOST_BIN/colo-cni' --version | grep -q colo-cni"
check "colo-cni is last in calico's chain, with the annotations capability" \
  test "$(jq -c '.plugins[-1] | [.type, .capabilities["io.kubernetes.cri.pod-annotations"]]' "$HOST_CONF/10-calico.conflist")" == '["colo-cni",true]'
check "runtimes see only the conflist (no stray CNI files)" test "$(find "$HOST_CONF" -name '*.conf*' ! -name '*.colo-backup' | wc -l)" -eq 1
check "uninstall succeeds" "$INST" uninstall --bin-dir "$HOST_BIN" --conf-dir "$HOST_CONF"
check "the conflist is byte for byte what calico wrote" test "$(sha256sum <"$HOST_CONF/10-calico.conflist")" == "$ORIGINAL"
check "the binary is gone" test ! -e "$HOST_BIN/colo-cni"
check "nothing of colo is left in the directory" test -z "$(find "$HOST_CONF" -name '*colo*')"

# --- read-only configuration directory ---
RO=$WORK/ro
mkdir -p "$RO"
mount -t tmpfs colo-it-ro "$RO"
cp "$FIX/flannel.conflist" "$RO/10-flannel.conflist"
mount -o remount,ro "$RO"
OUT=$("$INST" install --bin-dir "$HOST_BIN" --conf-dir "$RO" 2>&1 || true)
check "a read-only directory is a clear error" grep -q "Read-only file system" <<<"$OUT"
check "and the file is left as it was" bash -c "! grep -q colo-cni '$RO/10-flannel.conflist'"
umount "$RO"

# --- watch: the primary rewrites its file ---
WATCH=$WORK/watch
mkdir -p "$WATCH"
cp "$FIX/kindnet.conflist" "$WATCH/10-kindnet.conflist"
"$INST" install --bin-dir "$HOST_BIN" --conf-dir "$WATCH" --watch 2>"$WORK/watch.log" &
WATCHER=$!
stop_watcher() { kill -TERM "$WATCHER" 2>/dev/null || true; }
on_exit stop_watcher
chained() { jq -e '.plugins[-1].type == "colo-cni"' "$WATCH/10-kindnet.conflist" >/dev/null 2>&1; }
wait_for() { for _ in $(seq 1 100); do "$@" && return 0; sleep 0.05; done; return 1; }
check "--watch chains at start" wait_for chained
cp "$FIX/kindnet.conflist" "$WATCH/.new" && mv "$WATCH/.new" "$WATCH/10-kindnet.conflist"  # the primary rewrites it
check "when the primary rewrites its file, colo-cni is chained again" wait_for chained
for _ in 1 2; do
  wait_for chained
  cp "$FIX/kindnet.conflist" "$WATCH/.new" && mv "$WATCH/.new" "$WATCH/10-kindnet.conflist"
done
check "an edit reverted again and again is reported as a fight" wait_for grep -q "removed colo-cni from .* 3 times within 60 s; no longer editing" "$WORK/watch.log"
cp "$FIX/kindnet.conflist" "$WATCH/.new" && mv "$WATCH/.new" "$WATCH/10-kindnet.conflist"
sleep 1.5
check "after that the installer leaves the file alone" bash -c "! jq -e '.plugins[-1].type == \"colo-cni\"' '$WATCH/10-kindnet.conflist' >/dev/null"
check "the advice names the primary's setting" grep -q "cni.exclusive=false" "$WORK/watch.log"
kill -TERM "$WATCHER"
wait "$WATCHER" && RC=0 || RC=$?
check "the watcher exits on SIGTERM, with status 3 after a fight" test "$RC" -eq 3

finish
