#!/usr/bin/env bash
# Go for colo, offline: Debian's Go modules in GOPATH form (/usr/share/gocode) and the colo client
# at its import path colo.dev/colo through a GOPATH of our own in the build directory. No cgo.
#   scripts/go.sh test  [go test flags...]     the client's unit tests
#   scripts/go.sh build OUT DIR                 builds the main package in DIR (an example, a tool)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(realpath -m "${BUILD:-$ROOT/build}")  # absolute: GOPATH entries must be
command -v go >/dev/null || { echo "go.sh: go missing: run scripts/install-deps.sh" >&2; exit 1; }
mkdir -p "$BUILD/go/path/src/colo.dev"
ln -sfn "$ROOT/clients/go" "$BUILD/go/path/src/colo.dev/colo"
export GO111MODULE=off GOPATH=$BUILD/go/path:/usr/share/gocode GOCACHE=$BUILD/go/cache GOFLAGS='' CGO_ENABLED=0
cmd=${1:?usage: go.sh test|build ...}
shift
case $cmd in
  test) cd "$BUILD/go/path/src/colo.dev/colo" && go vet . && go test -count=1 "$@" . ;;
  build)
    out=$(realpath -m "$1") dir=$(realpath "$2")
    # Rebuild only when a source under the client or DIR is newer than the binary.
    if [[ -x $out && -z $(find "$ROOT/clients/go" "$dir" -name '*.go' -newer "$out" | head -n1) ]]; then exit 0; fi
    mkdir -p "$(dirname "$out")"
    (cd "$dir" && go build -o "$out" .) ;;
  *) echo "go.sh: unknown command $cmd" >&2; exit 2 ;;
esac
