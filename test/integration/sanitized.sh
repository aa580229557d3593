#!/usr/bin/env bash
# Runs one integration test against a sanitizer build (COLO_SANITIZE set by ctest): every colo
# process the test starts writes its sanitizer reports to files here instead of a log the test
# deletes, and the test fails when any report was written, whatever the test itself concluded.
set -uo pipefail
TEST=$1
[[ $(id -u) -eq 0 ]] || { echo "SKIP: integration tests need root" >&2; exit 77; }
REPORTS=$(mktemp -d /tmp/colo-san.XXXXXX)
# colo-cni, started by the chain with an environment of its own, reports here instead (the
# defaults built into it: cmake/sanitizer_defaults.cpp). Emptied first: one test's reports only.
PLUGIN_REPORTS=${COLO_BIN:?}/../sanitizer-reports
rm -rf "$PLUGIN_REPORTS"
mkdir -p "$PLUGIN_REPORTS"
trap 'rm -rf "$REPORTS"' EXIT
# abort_on_error: a report kills the process at once (no test can pass over it); the report itself
# is in $REPORTS. Leaks are reported when a process exits.
export ASAN_OPTIONS="log_path=$REPORTS/asan:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="log_path=$REPORTS/ubsan:print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="log_path=$REPORTS/tsan:halt_on_error=1:second_deadlock_stack=1"
export LSAN_OPTIONS="log_path=$REPORTS/lsan"
# Instrumented colo runs several times slower (ASan at -O0, TSan): the tests' time limits, meant
# to catch a stall, are scaled by this (lib.sh); the main build holds them as written.
export COLO_TIME_SCALE=${COLO_TIME_SCALE:-10}

bash "$TEST"
rc=$?
shopt -s nullglob
reports=("$REPORTS"/* "$PLUGIN_REPORTS"/*)
if ((${#reports[@]})); then
  echo "FAIL: ${COLO_SANITIZE:-sanitizer} reports from $(basename "$TEST"):" >&2
  for r in "${reports[@]}"; do
    echo "--- $(basename "$r")" >&2
    head -n 60 "$r" >&2
  done
  exit 1
fi
exit "$rc"
