#!/usr/bin/env bash
# fattn-onnx (tools/fattn-onnx): protoc-c and libprotobuf-c from Debian (the tool's ONNX reader
# is generated at build time from onnx.proto), and from PyPI the onnx package (which ships that
# onnx.proto) with onnxruntime, numpy and pytest for its tests. Idempotent: installs only what
# is missing. clang with libFuzzer, for fuzz/run.sh, is optional (its test is skipped without).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../deps-lib.sh"

need=()
command -v protoc-c >/dev/null 2>&1 || need+=(protobuf-c-compiler)
[ -e /usr/include/protobuf-c/protobuf-c.h ] || need+=(libprotobuf-c-dev)
apt_install onnx "${need[@]}"
pip_install_missing onnx onnx onnxruntime numpy pytest
