#!/usr/bin/env bash
# The TensorRT plugin's GPU run: builds the plugin libraries and the conformance host against
# TensorRT's headers (no TensorRT library is needed anywhere), then runs the host on the GPU,
# quick under compute-sanitizer memcheck, then in full. Logs go to $OUT.
#
#   device call: carry [".stage/trt"], command: bash scripts/plugin_gpu.sh
#   elsewhere:   TENSORRT_ROOT=/path/to/TensorRT OUT=/tmp/plugin-gpu bash scripts/plugin_gpu.sh
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/build-plugin-gpu/out}
TRT=${TENSORRT_ROOT:-$ROOT/.stage/trt}
BUILD=${PLUGIN_GPU_BUILD:-$ROOT/build-plugin-gpu}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
status=0

note() { echo "$*" | tee -a "$SUMMARY"; }
step() { # name, log file, command...
  local name=$1 log=$2
  shift 2
  local t0=$SECONDS
  "$@" >>"$log" 2>&1
  local rc=$?
  note "$name: rc=$rc ($((SECONDS - t0)) s)"
  # 77 is the host's "no GPU" skip: a failure wherever nvidia-smi saw a GPU.
  [ $rc -eq 0 ] || { [ $rc -eq 77 ] && [ -z "$cap" ]; } || status=1
  return $rc
}

note "device: $(nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>&1 | head -1)"
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
case "$cap" in
  90) archs="90a-real" ;;
  "") archs="90a-real;80-real" ;;
  *) archs="${cap}-real" ;;
esac
note "CUDA archs: $archs; TensorRT headers: $TRT"

BUILD_LOG=$OUT/build.log
if ! step configure "$BUILD_LOG" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DFATTN_CUDA_ARCHS="$archs" -DFATTN_BUILD_TESTS=ON -DTENSORRT_ROOT="$TRT"; then
  exit 1
fi
if ! step build "$BUILD_LOG" cmake --build "$BUILD" -j "$(nproc)" --target fattn_trt_plugin \
    fattn_trt_plugin_static fattn_plugin_conformance fattn_plugin_core_test; then
  tail -40 "$BUILD_LOG"
  exit 1
fi
P=$BUILD/plugin
{
  echo "exports of libfattn_trt_plugin.so:"; nm -D --defined-only "$P/libfattn_trt_plugin.so" | awk '$2=="T"{print "  "$3}'
  echo "exports of libfattn_trt_plugin_static.so:"; nm -D --defined-only "$P/libfattn_trt_plugin_static.so" | awk '$2=="T"{print "  "$3}'
  echo "needed libraries:"; readelf -d "$P/libfattn_trt_plugin.so" | awk '/NEEDED/{print "  "$NF}'
} >>"$SUMMARY"

step core_test "$OUT/core_test.log" "$P/fattn_plugin_core_test"
# The quick pass under memcheck first: the essentials are on record even if time runs out later.
if command -v compute-sanitizer >/dev/null; then
  step memcheck "$OUT/memcheck.log" timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$P/fattn_plugin_conformance" --plugin-dir "$P" --quick
  grep -E "ERROR SUMMARY|checks," "$OUT/memcheck.log" | tail -2 | tee -a "$SUMMARY"
fi
step conformance "$OUT/conformance.log" timeout 300 "$P/fattn_plugin_conformance" --plugin-dir "$P"
tail -1 "$OUT/conformance.log" | tee -a "$SUMMARY"
grep -E "^FAIL|seed shape|TFLOPS" "$OUT/conformance.log" | head -20 | tee -a "$SUMMARY"
note "overall: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
