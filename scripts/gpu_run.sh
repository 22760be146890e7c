#!/usr/bin/env bash
# One device call: configure + build (Release, only the needed targets), the GPU tests on both
# dispatch paths, compute-sanitizer over --small, the benchmark. Logs go to $OUT (or build-gpu/out):
# summary.txt (short table, also printed last), bench-*.md, and logs.tgz with everything else,
# because the device tool returns at most 8 files.
#
# Environment knobs (all optional):
#   SKIP_TESTS=1 SKIP_SANITIZER=1 SKIP_BENCH=1   leave a part out
#   ARCHS=90a-real            CUDA architectures to build (default: the card's own)
#   TEST_ARGS="--filter d128" extra arguments of test_gpu_forward (both paths)
#   FP8_TESTS=1               also run test_gpu_fp8_pass and test_gpu_fp8 (the FP8 pass's bytes, FP8 accuracy),
#                             and the sanitizer over test_gpu_fp8_pass; FP8_TESTS=big adds test_gpu_fp8 --big
#                             (the issue's full shapes: 1x4096x16x128 and the seed)
#   TEST_PATHS="portable auto"  dispatch paths the tests run (auto = Hopper kernel where it serves)
#   SAN_TOOLS="memcheck racecheck initcheck synccheck"
#   SAN_PATHS="portable"      dispatch paths the sanitizer runs
#   RACECHECK_ARGS="--filter bf16"  racecheck is ~30x slower than the other tools: bf16 cases only
#                             by default (the fp16/fp32 kernels share its shared-memory code)
#   SAN_ARGS="--filter f32"   arguments of test_gpu_forward under the other three tools
#   SAN_SMALL=""              the sanitizers' case set: --small by default, "" for the full one
#   SAN_LIB=build-var-NAME/src   the sanitizers run against that variant's libfattn instead of main's
#   BENCH_ARGS="--only seed"  extra arguments of bench/gpu_bench.py
#   BENCH_PATHS="portable auto"
#   TEST_TIMEOUT=300 SAN_TIMEOUT=150   seconds per test run / per sanitizer tool (rc 124 = cut off)
#   VARIANTS="bn112=-DCFG192_BN=112 d64w2=-DCFG64_NWG=2"   libfattn builds with
#                             other compile-time knobs (name=flags, flags without spaces; commas in
#                             flags become spaces), built in build-var-NAME while the tests run and
#                             timed beside fattn in the same benchmark (gpu_bench.py --variant)
#   TEST_VARIANTS="noturn"    also run test_gpu_forward (TEST_ARGS, Hopper path) against these variants'
#                             libraries (LD_LIBRARY_PATH before the test's RUNPATH), once they are built
#   TEST_VARIANT_ARGS=""      the variants' test arguments instead of TEST_ARGS ("" = the full run)
#   AB_ARGS="--fp8 --only seed"  run bench/ab.py (paired, call-by-call comparison of fattn against the
#                             variants and base) with these arguments after the benchmark
#   BASE=.base                another source tree (e.g. `git archive <commit> | tar -x -C .base`, carried),
#                             built as the variant "base": the previous commit timed in the same run
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=${OUT:-$ROOT/build-gpu/out}
mkdir -p "$OUT"
LOG=$(mktemp -d)
BUILD=$ROOT/build-gpu
SUMMARY=$LOG/summary.txt
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
t0=$(date +%s)
elapsed() { echo $(($(date +%s) - t0)); }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv >"$LOG/nvidia-smi.txt" 2>&1
note "card: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1); nvcc $(nvcc --version | grep -o 'release [0-9.]*')"
if [ -z "${ARCHS:-}" ]; then
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
  case "$cc" in 90) ARCHS="90a-real" ;; "") ARCHS="80-real;90a-real" ;; *) ARCHS="${cc}-real" ;; esac
fi

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATTN_CUDA_ARCHS="$ARCHS" \
  -DFATTN_PTXAS_VERBOSE=ON -DFATTN_BUILD_TESTS=ON >"$LOG/configure.log" 2>&1
if ! cmake --build "$BUILD" --target fattn test_gpu_forward test_gpu_fp8 test_gpu_fp8_pass >"$LOG/build.log" 2>&1; then
  note "BUILD FAILED (after $(elapsed)s):"
  grep -E "error|Error" "$LOG/build.log" | head -20 | tee -a "$SUMMARY"
  (cd "$LOG" && tar czf "$OUT/logs.tgz" .) ; cp "$SUMMARY" "$OUT/"
  exit 1
fi
spills=$(grep -c "bytes spill stores" "$LOG/build.log"; true)
nonzero=$(grep "bytes spill stores" "$LOG/build.log" | grep -vc " 0 bytes spill stores"; true)
note "build ok in $(elapsed)s (archs $ARCHS); kernels with spills: $nonzero of $spills"

variant_args=""
for v in ${VARIANTS:-}; do
  name=${v%%=*} flags=${v#*=}
  ( cmake -S . -B "$ROOT/build-var-$name" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATTN_CUDA_ARCHS="$ARCHS" \
      -DFATTN_BUILD_TESTS=OFF -DCMAKE_CUDA_FLAGS="${flags//,/ }" && cmake --build "$ROOT/build-var-$name" --target fattn ) \
    >"$LOG/build-var-$name.log" 2>&1 &
  variant_args="$variant_args --variant $name=$ROOT/build-var-$name/src/libfattn.so"
done

if [ -n "${BASE:-}" ]; then
  ( cmake -S "$BASE" -B "$ROOT/build-var-base" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATTN_CUDA_ARCHS="$ARCHS" \
      -DFATTN_BUILD_TESTS=OFF && cmake --build "$ROOT/build-var-base" --target fattn ) >"$LOG/build-var-base.log" 2>&1 &
  variant_args="$variant_args --variant base=$ROOT/build-var-base/src/libfattn.so"
  VARIANTS="${VARIANTS:-} base=$BASE"
fi

path_env() { if [ "$1" = portable ]; then echo "FATTN_FORCE_PORTABLE=1"; else echo "FATTN_FORCE_PORTABLE=0"; fi; }

if [ -z "${SKIP_TESTS:-}" ]; then
  for path in ${TEST_PATHS:-portable auto}; do
    timeout "${TEST_TIMEOUT:-300}" env "$(path_env "$path")" "$BUILD/tests/gpu/test_gpu_forward" ${TEST_ARGS:-} >"$LOG/test-$path.log" 2>&1
    rc=$?
    note "tests [$path]: rc=$rc; $(grep '^summary' "$LOG/test-$path.log" || echo 'no summary (crashed?)') ($(elapsed)s)"
    grep -E '^FAIL' "$LOG/test-$path.log" | head -15 | tee -a "$SUMMARY"
  done
  if [ -n "${FP8_TESTS:-}" ]; then
    fp8_run() { # log name, test binary, its arguments
      local name=$1 bin=$2
      shift 2
      timeout "${TEST_TIMEOUT:-300}" "$BUILD/tests/gpu/$bin" "$@" >"$LOG/$name.log" 2>&1
      note "$name: rc=$? $(grep -E 'passed|summary' "$LOG/$name.log" | tail -1) ($(elapsed)s)"
      grep -E '^FAIL' "$LOG/$name.log" | head -10 | tee -a "$SUMMARY"
    }
    fp8_run test_gpu_fp8_pass test_gpu_fp8_pass
    fp8_run test_gpu_fp8 test_gpu_fp8
    [ "$FP8_TESTS" = big ] && fp8_run test_gpu_fp8_big test_gpu_fp8 --big
  fi
fi

if [ -z "${SKIP_SANITIZER:-}" ]; then
  if [ -n "${SAN_LIB:-}" ]; then
    wait # the variant builds
    [ -f "$ROOT/$SAN_LIB/libfattn.so" ] || note "SAN_LIB $SAN_LIB: no libfattn.so there (BUILD FAILED?)"
  fi
  for path in ${SAN_PATHS:-portable}; do
    for tool in ${SAN_TOOLS:-memcheck racecheck initcheck synccheck}; do
      extra=${SAN_ARGS:-}
      [ "$tool" = racecheck ] && extra=${RACECHECK_ARGS---filter bf16}
      timeout "${SAN_TIMEOUT:-150}" env "$(path_env "$path")" ${SAN_LIB:+LD_LIBRARY_PATH=$ROOT/$SAN_LIB} \
        compute-sanitizer --tool "$tool" --error-exitcode 9 \
        "$BUILD/tests/gpu/test_gpu_forward" ${SAN_SMALL---small} $extra >"$LOG/san-$tool-$path.log" 2>&1
      rc=$?
      note "compute-sanitizer $tool [$path]: rc=$rc; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOG/san-$tool-$path.log" | tail -1) ($(elapsed)s)"
    done
  done
  if [ -n "${FP8_TESTS:-}" ]; then
    for tool in ${SAN_TOOLS:-memcheck racecheck initcheck synccheck}; do
      timeout "${SAN_TIMEOUT:-150}" compute-sanitizer --tool "$tool" --error-exitcode 9 \
        "$BUILD/tests/gpu/test_gpu_fp8_pass" >"$LOG/san-$tool-fp8-pass.log" 2>&1
      rc=$?
      note "compute-sanitizer $tool [fp8 pass]: rc=$rc; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOG/san-$tool-fp8-pass.log" | tail -1) ($(elapsed)s)"
    done
  fi
fi

if [ -n "${VARIANTS:-}" ]; then
  wait
  for v in ${VARIANTS}; do
    if [ -f "$ROOT/build-var-${v%%=*}/src/libfattn.so" ]; then note "variant $v: built"; else note "variant $v: BUILD FAILED"; fi
  done
fi

for name in ${TEST_VARIANTS:-}; do
  lib=$ROOT/build-var-$name/src
  resolved=$(LD_LIBRARY_PATH=$lib ldd "$BUILD/tests/gpu/test_gpu_forward" | awk '/libfattn/ {print $3}')
  timeout "${TEST_TIMEOUT:-300}" env LD_LIBRARY_PATH="$lib" FATTN_FORCE_PORTABLE=0 "$BUILD/tests/gpu/test_gpu_forward" \
    ${TEST_VARIANT_ARGS-${TEST_ARGS:-}} >"$LOG/test-variant-$name.log" 2>&1
  note "tests [variant $name, $resolved]: rc=$?; $(grep '^summary' "$LOG/test-variant-$name.log" || echo 'no summary (crashed?)') ($(elapsed)s)"
  grep -E '^FAIL' "$LOG/test-variant-$name.log" | head -15 | tee -a "$SUMMARY"
done

if [ -z "${SKIP_BENCH:-}" ]; then
  for path in ${BENCH_PATHS:-portable auto}; do
    flag=""; [ "$path" = portable ] && flag="--portable"
    FATTN_LIBRARY="$BUILD/src/libfattn.so" OUT="$LOG" PYTHONUNBUFFERED=1 \
      python3 bench/gpu_bench.py $flag --tag "$path" $variant_args ${BENCH_ARGS:-} >"$LOG/bench-$path.log" 2>&1
    note "bench [$path]: rc=$? ($(elapsed)s)"
    [ -f "$LOG/bench-$path.md" ] && cp "$LOG/bench-$path.md" "$OUT/" && cat "$LOG/bench-$path.md" >>"$SUMMARY"
    [ -f "$LOG/bench-$path.md" ] || tail -5 "$LOG/bench-$path.log" | tee -a "$SUMMARY"
  done
fi

if [ -n "${AB_ARGS:-}" ]; then
  FATTN_LIBRARY="$BUILD/src/libfattn.so" PYTHONUNBUFFERED=1 \
    python3 bench/ab.py $variant_args $AB_ARGS >"$LOG/ab.md" 2>&1
  note "paired comparison (bench/ab.py): rc=$? ($(elapsed)s)"
  cp "$LOG/ab.md" "$OUT/" && cat "$LOG/ab.md" >>"$SUMMARY"
fi

note "total $(elapsed)s"
cp "$SUMMARY" "$OUT/summary.txt"
(cd "$LOG" && tar czf "$OUT/logs.tgz" .)
echo "=================== summary ==================="
cat "$SUMMARY"
