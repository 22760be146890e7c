#!/usr/bin/env bash
# Device call 1 of 2 (carry [".fa4a"]): parks the first half of the cu13 wheel in /tmp/fa4, where
# call 2 (scripts/fa4/install.sh, carrying ".fa4b") finds it. Tiny on purpose: the machine stays
# warm only ~30 s after a call, and /tmp is gone with it. FA4_PARK=DIR parks elsewhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
park=${FA4_PARK:-/tmp/fa4}
if [ ! -f .fa4a/part-a ]; then
  echo "park: .fa4a/part-a is missing: run scripts/fa4/prepare.sh here and carry [\".fa4a\"]" >&2
  exit 1
fi
mkdir -p "$park"
cp .fa4a/part-a "$park/part-a"
echo "park: $(stat -c %s "$park/part-a") bytes in $park/part-a; next call: carry [\".fa4b\"], scripts/fa4/install.sh"
