#!/usr/bin/env bash
# podman with its CNI backend as a real caller: a busybox container on a network whose conflist
# chains bridge + host-local + colo-cni. ADD on run, DEL on removal, seen through /debug/pods.
source "$(dirname "$0")/lib.sh"

BR=cpm$TAG
BR=${BR:0:15}
make_bridge "$BR"
NET=colo-pm$TAG

# Private podman: own storage, own network config dir, runc, cgroupfs, offline image.
mkdir -p "$WORK/net.d" "$WORK/rootfs/bin" "$WORK/tmp"
cat >"$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=512:512"]
log_driver = "k8s-file"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$COLO_BIN", "$REF_PLUGINS"]
network_config_dir = "$WORK/net.d"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/events.log"
tmp_dir = "$WORK/tmp"
CONF
cat >"$WORK/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$WORK/storage"
runroot = "$WORK/runroot"
CONF
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf
pm() { podman --cgroup-manager cgroupfs "$@"; }
podman_cleanup() { pm rm -fa >/dev/null 2>&1 || true; pm rmi -fa >/dev/null 2>&1 || true; }
on_exit podman_cleanup

write_conflist "$WORK/net.d/$NET.conflist" "$NET" "$BR" 198.18.2.0/24 closed true

cp /bin/busybox "$WORK/rootfs/bin/busybox"
cp "$COLO_BIN/coloctl" "$WORK/rootfs/bin/coloctl"  # static: runs in any image
for a in sh sleep ip cat; do ln -s busybox "$WORK/rootfs/bin/$a"; done
tar -C "$WORK/rootfs" -c . | pm import - localhost/colo-busybox:it >/dev/null

start_agent

check "podman runs a busybox container on the colo network" \
  pm run -d --name "c$TAG" --network "$NET" localhost/colo-busybox:it sleep 60
CID=$(pm inspect -f '{{.Id}}' "c$TAG" 2>/dev/null || echo none)
CTR_IP=$(pm exec "c$TAG" ip -4 -o addr show eth0 2>/dev/null | awk '{print $4}' || true)
check "the container got an address from host-local in 198.18.2.0/24" bash -c "[[ '$CTR_IP' == 198.18.2.*/24 ]]"
check "podman's ADD reached colo-node: /debug/pods lists the container" \
  test "$(agent_get /debug/pods | jq -r --arg c "$CID" '[.pods[] | select(.containerID == $c)] | length')" -eq 1
check "colo-node holds the container's address" \
  test "$(agent_get /debug/pods | jq -r --arg c "$CID" '.pods[] | select(.containerID == $c) | .ips[0]')" == "$CTR_IP"
check "podman passes no pod UID, so the pod is keyed by its container id" \
  test "$(agent_get /debug/pods | jq -r --arg c "$CID" '.pods[] | select(.containerID == $c) | .key')" == "$CID"

HELLO=$(pm exec "c$TAG" /bin/coloctl hello 2>/dev/null || true)
check "inside the container, @colo answers with the container's identity" test "$(jq -r .identity.key <<<"$HELLO")" == "$CID"
check "the identity carries the container's address" test "$(jq -r '.identity.ips[0]' <<<"$HELLO")" == "$CTR_IP"
check "the container's colo directory exists on the node" test -S "$WORK/run/pods/$CID/colo.sock"

check "podman removes the container" pm rm -f -t 0 "c$TAG"
check "podman's DEL reached colo-node: the pod is forgotten" test "$(agent_get /debug/pods | jq '.pods | length')" -eq 0
check "its colo directory is gone" test ! -e "$WORK/run/pods/$CID"
check "colo-node counted one ADD and one DEL" \
  test "$(metric 'colo_cni_requests_total{verb="add",result="ok"}'),$(metric 'colo_cni_requests_total{verb="del",result="ok"}')" == "1,1"

finish
