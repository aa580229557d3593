#!/usr/bin/env bash
# test-stages.sh STAGE...: `make test` (and CI). Each stage is `make STAGE-build` then
# `make STAGE-test` (Makefile); every stage runs even when an earlier one failed, and the summary
# at the end gives each stage's build and test times, its result and the tests that failed.
# Exit status: 0 only when every stage passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
MAKE=${MAKE:-make}
# The build directory of each stage, where ctest leaves the names of the tests that failed.
declare -A DIR=([main]=${BUILD:-build} [asan]=${ASAN_BUILD:-build-asan} [tsan]=${TSAN_BUILD:-build-tsan}
                [arm64]=${ARM64_BUILD:-build-arm64})

rows=()
failed=0
t_all=$SECONDS
for stage in "$@"; do
  [[ -n ${DIR[$stage]:-} ]] || { echo "test-stages: unknown stage '$stage' (${!DIR[*]})" >&2; exit 2; }
  echo "=== stage $stage: build ($(date -u +%H:%M:%S) UTC)"
  t0=$SECONDS
  $MAKE --no-print-directory "$stage-build"
  build_rc=$?
  build_s=$((SECONDS - t0))
  test_s=- tests=
  if ((build_rc == 0)); then
    echo "=== stage $stage: test ($(date -u +%H:%M:%S) UTC)"
    rm -f "${DIR[$stage]}/Testing/Temporary/LastTestsFailed.log"
    t0=$SECONDS
    $MAKE --no-print-directory "$stage-test"
    test_rc=$?
    test_s=$((SECONDS - t0))s
    if ((test_rc != 0)); then
      result="FAIL (tests)"
      # Lines of LastTestsFailed.log are "N:name".
      tests=$(cut -d: -f2- "${DIR[$stage]}/Testing/Temporary/LastTestsFailed.log" 2>/dev/null | paste -sd' ')
    else
      result=ok
    fi
  else
    result="FAIL (build)"
  fi
  [[ $result == ok ]] || failed=1
  rows+=("$(printf '%-6s %7s %7s  %s %s' "$stage" "${build_s}s" "$test_s" "$result" "$tests")")
  echo "=== stage $stage: $result"
done

echo
echo "=== make test summary ($(((SECONDS - t_all) / 60)) min $(((SECONDS - t_all) % 60)) s in all)"
printf '%-6s %7s %7s  %s\n' stage build test result
printf '%s\n' "${rows[@]}"
exit $failed
