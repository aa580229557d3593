#!/usr/bin/env bash
# Installs every build, test and demo dependency of colo from Debian's packages.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config clang llvm
  nlohmann-json3-dev libnl-3-dev libnl-route-3-dev libbpf-dev bpftool
  libcpp-httplib-dev libssl-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev
  iproute2 iputils-ping containernetworking-plugins podman runc busybox-static
  iperf3 sockperf curl jq python3 shellcheck yamllint openssl
  python3-kubernetes python3-jsonschema python3-yaml
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
  golang-golang-x-sys-dev golang-google-grpc-dev golang-github-golang-protobuf-1-3-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all ${#PACKAGES[@]} packages present" >&2
fi
