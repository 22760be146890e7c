#!/usr/bin/env bash
# Build tools for libfattn, its C tests and the demo: a C compiler, CMake >= 3.24, Ninja,
# pkg-config (install test), binutils' nm (exports test), and python3 with pip and venv for the
# parts whose tests or deps scripts are Python. Debian packages only; installs
# only what is missing, so it is cheap to run again.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../deps-lib.sh"

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v nm >/dev/null 2>&1 || need+=(binutils)
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
# The doc-block test installs the package into a throwaway virtual environment.
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
apt_install core "${need[@]}"
