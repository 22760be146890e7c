#!/usr/bin/env bash
# fattn-onnx (tools/fattn-onnx): protoc-c and libprotobuf-c from Debian (the tool's ONNX reader
# is generated at build time from onnx.proto), and from PyPI the onnx package (which ships that
# onnx.proto) with onnxruntime, numpy and pytest for its tests. Idempotent: installs only what
# is missing. clang with libFuzzer, for fuzz/run.sh, is optional (its test is skipped without).
set -euo pipefail

need=()
command -v protoc-c >/dev/null 2>&1 || need+=(protobuf-c-compiler)
[ -e /usr/include/protobuf-c/protobuf-c.h ] || need+=(libprotobuf-c-dev)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
  fi
  echo "deps/onnx: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
else
  echo "deps/onnx: protoc-c and libprotobuf-c present"
fi

python=${PYTHON:-python3}
missing=()
for module in onnx onnxruntime numpy pytest; do
  "$python" -c "import $module" 2>/dev/null || missing+=("$module")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps/onnx: onnx, onnxruntime, numpy, pytest already installed"
  exit 0
fi
echo "deps/onnx: installing ${missing[*]}"
"$python" -m pip install --disable-pip-version-check -q "${missing[@]}"
