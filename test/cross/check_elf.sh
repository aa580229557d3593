#!/usr/bin/env bash
# check_elf.sh READELF PROCESSOR colo-cni colo-node libcolo.a coloctl: every file (every member of an
# archive) is ELF for PROCESSOR, and colo-cni and coloctl are static.
set -euo pipefail
READELF=$1 PROCESSOR=$2
shift 2
case $PROCESSOR in
  aarch64 | arm64) MACHINE=AArch64 ;;
  x86_64) MACHINE="Advanced Micro Devices X86-64" ;;
  *) echo "check_elf: unknown processor $PROCESSOR" >&2; exit 2 ;;
esac
rc=0
for f in "$@"; do
  machines=$("$READELF" -h "$f" | sed -n 's/^ *Machine: *//p' | sort -u)
  if [[ $machines != "$MACHINE" ]]; then
    echo "FAIL: $f is for '${machines//$'\n'/, }', not $MACHINE" >&2
    rc=1
  else
    echo "ok: $(basename "$f"): $MACHINE ($(grep -c . <<<"$("$READELF" -h "$f" | grep Machine:)") ELF headers)"
  fi
done
for f in "$1" "$4"; do
  if "$READELF" -l "$f" | grep -q INTERP; then
    echo "FAIL: $(basename "$f") is dynamically linked" >&2
    rc=1
  else
    echo "ok: $(basename "$f") is static"
  fi
done
exit $rc
