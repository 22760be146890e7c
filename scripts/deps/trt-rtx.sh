#!/usr/bin/env bash
# TensorRT-RTX from PyPI, for the CI tests that build TensorRT engines with the plugin on a machine
# without a GPU (python/tests/test_trt.py): the pinned wheels below (~95 MB) give the Python module
# tensorrt_rtx_bindings with libtensorrt_rtx.so.1 and its ONNX parser. The parser also dlopens the
# unversioned libtensorrt_rtx.so, which the wheel does not ship (the process aborts without it),
# so this script links it into a folder the project owns, $FATTN_TRT_RTX_LIB (default
# .stage/tensorrt-rtx/lib in the repository, git-ignored), which CTest puts on LD_LIBRARY_PATH.
# Idempotent: pip runs only when the pinned versions are not installed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${PYTHON:-python3}
version=1.7.1.116
wheels=(tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings)
link_dir=${FATTN_TRT_RTX_LIB:-$root/.stage/tensorrt-rtx/lib}

installed() {
  "$python" - "$version" "${wheels[@]}" <<'PY'
import sys
from importlib import metadata
want, names = sys.argv[1], sys.argv[2:]
try:
    sys.exit(0 if all(metadata.version(n) == want for n in names) else 1)
except metadata.PackageNotFoundError:
    sys.exit(1)
PY
}

if installed; then
  echo "deps/trt-rtx: ${wheels[*]} $version already installed"
else
  echo "deps/trt-rtx: installing ${wheels[*]} $version"
  "$python" -m pip install --disable-pip-version-check -q "${wheels[@]/%/==$version}"
fi
lib=$("$python" -c 'import os, tensorrt_rtx_libs; print(os.path.join(os.path.dirname(tensorrt_rtx_libs.__file__), "libtensorrt_rtx.so.1"))')
[ -e "$lib" ] || { echo "deps/trt-rtx: $lib is missing after the install" >&2; exit 1; }
mkdir -p "$link_dir"
ln -sfn "$lib" "$link_dir/libtensorrt_rtx.so"
echo "deps/trt-rtx: $link_dir/libtensorrt_rtx.so -> $lib"
