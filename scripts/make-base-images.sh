#!/usr/bin/env bash
# Offline base images for `make image`: no registry is reachable here, Debian's archive is. Two
# minimal bookworm root filesystems made with debootstrap, each already holding its stage's
# packages (image/packages.sh), imported into podman under the names the Dockerfile starts FROM.
# Skipped when the images exist (COLO_REBUILD_BASE=1 rebuilds).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=image/packages.sh
. "$HERE/image/packages.sh"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[[ $(id -u) -eq 0 ]] || { echo "make-base-images: needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null

base() {
  local name=$1 packages=$2
  if [[ -z ${COLO_REBUILD_BASE:-} ]] && podman image exists "$name"; then
    echo "base image $name: present"
    return
  fi
  local root
  root=$(mktemp -d /var/tmp/colo-rootfs.XXXXXX)
  trap 'rm -rf "$root"' RETURN
  echo "base image $name: debootstrap bookworm from $MIRROR"
  debootstrap --variant=minbase --include="$(echo "$packages" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')" \
    bookworm "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; exit 1; }
  rm -f "$root.log"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$name" >/dev/null
  echo "base image $name: imported ($(podman image inspect "$name" --format '{{.Size}}') bytes)"
}

base docker.io/library/debian:bookworm "$BUILD_PACKAGES"
base docker.io/library/debian:bookworm-slim "$RUNTIME_PACKAGES"
