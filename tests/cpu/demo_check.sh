#!/usr/bin/env bash
# demo_check.sh DEMO ARGS...: runs the demo; passes only when it exits 0 *and* its float64 check
# printed PASS, so neither a crash after the check line nor a FAIL with exit 0 gets through.
set -uo pipefail
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ]; then
  echo "demo_check: the demo exited $rc"
  exit 1
fi
if ! grep -q '^check: .*: PASS$' <<<"$out"; then
  echo "demo_check: no 'check: ... PASS' line in the demo's output"
  exit 1
fi
