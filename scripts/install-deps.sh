#!/usr/bin/env bash
# Installs every build, test and demo dependency of colo from Debian's packages.
# Idempotent: packages already present are not fetched again.
#   --arm64: also the arm64 cross toolchain and the arm64 (multiarch) libraries `make arm64` links,
#            and qemu-user to run the arm64 unit tests.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config clang llvm
  nlohmann-json3-dev libnl-3-dev libnl-route-3-dev libbpf-dev bpftool
  libcpp-httplib-dev libssl-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev
  iproute2 iputils-ping containernetworking-plugins podman runc busybox-static
  iperf3 sockperf curl jq python3 shellcheck yamllint openssl strace
  python3-kubernetes python3-jsonschema python3-yaml
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
  golang-golang-x-sys-dev golang-google-grpc-dev golang-github-golang-protobuf-1-3-dev
)

# libyaml-cpp-dev is not Multi-Arch: same (its arm64 build would replace the amd64 one): the
# cross build takes the runtime library and the build machine's headers (CMakeLists.txt).
ARM64_PACKAGES=(
  g++-aarch64-linux-gnu qemu-user
  libspdlog-dev:arm64 libfmt-dev:arm64 libyaml-cpp0.7:arm64 libcpp-httplib-dev:arm64 libssl-dev:arm64
  libbpf-dev:arm64 libnl-3-dev:arm64 libnl-route-3-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64
)

if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
update=
if [[ ${1:-} == --arm64 ]]; then
  PACKAGES+=("${ARM64_PACKAGES[@]}")
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "install-deps: adding the arm64 architecture (multiarch)" >&2
    $SUDO dpkg --add-architecture arm64
    update=1
  fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif [[ -n $update ]]; then
  $SUDO apt-get update -qq
else
  echo "install-deps: all ${#PACKAGES[@]} packages present" >&2
fi
