#!/usr/bin/env bash
# make image: builds colo's image with podman from image/Dockerfile, offline (base images from
# scripts/make-base-images.sh, no network during the build), then checks it: colo-node runs and
# says its version, colo-cni is there and static, the installer runs. Saves it as a tar for
# `kind load image-archive`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TAG=${COLO_IMAGE:-localhost/colo:$(sed -n 's/.*project(colo VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")}
OUT=${COLO_IMAGE_TAR:-$ROOT/build/colo-image.tar}
[[ $(id -u) -eq 0 ]] || { echo "build-image: needs root" >&2; exit 1; }
bash "$ROOT/scripts/make-base-images.sh"
# crun fails on this host's cgroup setup; runc works. No network: the base images hold every package.
PM=(podman --runtime runc --cgroup-manager cgroupfs)
"${PM[@]}" build --network none --pull=never -f "$ROOT/image/Dockerfile" -t "$TAG" "$ROOT"

fail() { echo "build-image: FAIL: $*" >&2; exit 1; }
# This host refuses the default open-files limit podman asks runc for; a modest one works.
run() { "${PM[@]}" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=512:512 "$@"; }
version=$(run "$TAG" --version) || fail "colo-node --version did not run"
[[ $version == "colo-node "* ]] || fail "unexpected version output: $version"
run --entrypoint /bin/sh "$TAG" -c 'test -x /opt/colo/bin/colo-cni' || fail "no colo-cni in /opt/colo/bin"
run --entrypoint /bin/sh "$TAG" -c '! ldd /opt/colo/bin/colo-cni >/dev/null 2>&1' || fail "colo-cni is not static"
usage() { { run --entrypoint "$1" "$TAG" "${@:2}" 2>&1 || true; } | grep -q usage; }  # usage and exit 2
usage /usr/local/bin/colo-cni-installer || fail "colo-cni-installer does not run"
usage /usr/local/bin/coloctl --help || fail "coloctl does not run"
# The installer as the DaemonSet runs it: onto a kindnet-shaped node, then off again.
node=$(mktemp -d)
trap 'rm -rf "$node"' EXIT
mkdir -p "$node/bin" "$node/net.d"
cp "$ROOT/test/fixtures/cni-confs/kindnet.conflist" "$node/net.d/10-kindnet.conflist"
inst() { run -v "$node/bin:/host/cni/bin" -v "$node/net.d:/host/cni/net.d" --entrypoint /usr/local/bin/colo-cni-installer "$TAG" "$@" --bin-dir /host/cni/bin --conf-dir /host/cni/net.d; }
inst install --bin-source /opt/colo/bin/colo-cni >/dev/null 2>&1 || fail "the image's installer failed to install"
[[ -x $node/bin/colo-cni ]] && grep -q '"colo-cni"' "$node/net.d/10-kindnet.conflist" || fail "colo-cni not installed and chained"
inst uninstall >/dev/null 2>&1 || fail "the image's installer failed to uninstall"
cmp -s "$node/net.d/10-kindnet.conflist" "$ROOT/test/fixtures/cni-confs/kindnet.conflist" || fail "uninstall did not restore the conflist"
echo "image $TAG: $version; colo-cni static in /opt/colo/bin; $("${PM[@]}" image inspect "$TAG" --format '{{.Size}}') bytes"
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"
"${PM[@]}" save --format docker-archive -o "$OUT" "$TAG"
echo "saved to $OUT (kind load image-archive $OUT)"
