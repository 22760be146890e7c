#!/usr/bin/env bash
# The Hopper kernel on the GPU machine, in one device call: scripts/gpu_run.sh with the GPU test
# matrix, compute-sanitizer and the benchmark (against SDPA cuDNN and flash) all on the Hopper path
# (FATTN_FORCE_PORTABLE=0), then the count of tensor-core and TMA instructions in libfattn's SASS.
# Tile variants for tuning go through CMake's CUDAFLAGS (read when the build folder is configured,
# which on the device machine is every call), e.g. CUDAFLAGS="-DCFG256_BN=64" scripts/hopper_dev.sh.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
TEST_PATHS=${TEST_PATHS:-auto} SAN_PATHS=${SAN_PATHS:-auto} BENCH_PATHS=${BENCH_PATHS:-auto} scripts/gpu_run.sh "$@"
rc=$?
lib=build-gpu/src/libfattn.so
if command -v cuobjdump >/dev/null && [ -f "$lib" ]; then
    sass=$(cuobjdump -sass "$lib")
    echo "SASS of $lib: $(grep -c HGMMA <<<"$sass") HGMMA, $(grep -c UTMALDG <<<"$sass") UTMALDG," \
        "$(grep -c UTMASTG <<<"$sass") UTMASTG, $(grep -cE '\b(LDL|STL)\b' <<<"$sass") LDL/STL" | tee -a "${OUT:-build-gpu/out}/summary.txt"
fi
exit $rc
