#!/bin/sh
# The Debian packages each stage of the colo image needs. One list, used by the Dockerfile (to
# install them) and by scripts/make-base-images.sh (to build offline base images holding them).
# shellcheck disable=SC2034
BUILD_PACKAGES="build-essential cmake ninja-build pkg-config clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev
 nlohmann-json3-dev libcpp-httplib-dev libssl-dev libyaml-cpp-dev libspdlog-dev libfmt-dev"
RUNTIME_PACKAGES="libspdlog1.10 libfmt9 libbpf1 libelf1 libyaml-cpp0.7 libcpp-httplib0.11 libssl3 zlib1g libbrotli1 libstdc++6"

# ensure_packages LIST: installs the packages of LIST not yet installed; with all present it needs
# no network (the offline base images hold them already).
ensure_packages() {
  missing=""
  for p in $1; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && { echo "packages: all present"; return 0; }
  echo "packages: installing$missing"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
  rm -rf /var/lib/apt/lists/*
}
