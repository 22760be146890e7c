#!/usr/bin/env bash
# FP8 mode on the GPU machine in one device call: build (sm_90a), the quantisation pass's bytes
# against the host (test_gpu_fp8_pass), the FP8 test (small cases, then
# the accuracy bars at 1x4096x16x128 and the seed shape), the native test matrix (the kernel is
# shared), compute-sanitizer over the FP8 cases, and the benchmark with --fp8. Logs under $OUT.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$PWD/build-gpu/out}
mkdir -p "$OUT"
S=$OUT/summary.txt
: >"$S"
note() { echo "$*" | tee -a "$S"; }
t0=$SECONDS
note "card: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATTN_CUDA_ARCHS=90a-real -DFATTN_PTXAS_VERBOSE=ON \
  >"$OUT/build.log" 2>&1
if ! cmake --build build-gpu --target fattn test_gpu_forward test_gpu_fp8 test_gpu_fp8_pass >>"$OUT/build.log" 2>&1; then
  note "BUILD FAILED"; grep -E "error" "$OUT/build.log" | head -20 | tee -a "$S"; exit 1
fi
note "build ok ($((SECONDS - t0)) s)"
run() { # name, limit, command...
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  note "== $name: rc=$? ($((SECONDS - t0)) s)"
  grep -E "^(PASS|FAIL|SKIP)|passed|summary|ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/$name.log" | tail -20 | tee -a "$S"
}
for part in ${PARTS:-fp8 native san bench big}; do
  case $part in
    fp8) run fp8_pass 120 build-gpu/tests/gpu/test_gpu_fp8_pass
         run fp8_small 120 build-gpu/tests/gpu/test_gpu_fp8 ;;
    native) run native 300 env FATTN_FORCE_PORTABLE=0 build-gpu/tests/gpu/test_gpu_forward ;;
    san) for tool in memcheck racecheck initcheck synccheck; do
           run "san_$tool" 100 compute-sanitizer --tool $tool --error-exitcode 9 build-gpu/tests/gpu/test_gpu_fp8
         done ;;
    bench) FATTN_LIBRARY=build-gpu/src/libfattn.so OUT=$OUT run bench 300 python3 bench/gpu_bench.py --fp8 \
             --tag fp8 ${BENCH_ARGS:---only seed d128_16k d128_4k d256_16k gqa}
           cat "$OUT"/bench-fp8.md >>"$S" 2>/dev/null ;;
    big) run fp8_big 300 build-gpu/tests/gpu/test_gpu_fp8 --big ;;
    prof) FATTN_LIBRARY=build-gpu/src/libfattn.so run prof 120 ncu --metrics gpu__time_duration.sum \
            python3 bench/once.py ${PROF_SHAPE:-1,15708,32,128}
          grep -E "^  [a-z_0-9]+.*\(|gpu__time_duration" "$OUT/prof.log" | paste - - | sed 's/  */ /g' | cut -c1-160 | tee -a "$S" ;;
  esac
done
note "total $((SECONDS - t0)) s"
