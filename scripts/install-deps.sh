#!/usr/bin/env bash
# Installs what every part of fattn needs to build and test: runs each scripts/deps/*.sh (one
# per part, each idempotent, Debian packages and PyPI only) in name order; stops at the first
# that fails.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# A CI machine is thrown away after the run, so pip may install into Debian's system Python
# (PEP 668 forbids that by default).
if [ "${CI:-}" = true ]; then
  export PIP_BREAK_SYSTEM_PACKAGES=1
fi
shopt -s nullglob
for script in "$here"/deps/*.sh; do
  echo "== install-deps: $(basename "$script")"
  bash "$script"
done
