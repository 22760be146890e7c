#!/usr/bin/env bash
# Development loop for the Hopper kernel on the GPU machine: build a stand-alone library from
# src/cuda/hopper (with dev/shim.c standing in for the core), check it against float64 torch,
# time it against SDPA's cuDNN backend, and list its tensor-core instructions.
# Usage: scripts/hopper_dev.sh [--bench] [--sanitize]   (logs under $OUT when set)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build-hopper}
b=build-hopper/dev
mkdir -p "$b" "$out"
nvcc -std=c++17 -O3 -Xcompiler -fPIC -shared -gencode=arch=compute_90a,code=sm_90a -Iinclude -Xptxas -v \
    src/cuda/hopper/hopper.cu src/cuda/hopper/dev/shim.c -o "$b/libhopperdev.so" >"$out/ptxas.log" 2>&1 ||
    { cat "$out/ptxas.log"; exit 1; }
grep -E "spill|registers" "$out/ptxas.log" | sort | uniq -c
if command -v cuobjdump >/dev/null; then
    cuobjdump -sass "$b/libhopperdev.so" >"$out/sass.txt"
    echo "SASS: $(grep -c HGMMA "$out/sass.txt") HGMMA, $(grep -c UTMALDG "$out/sass.txt") UTMALDG," \
        "$(grep -c UTMASTG "$out/sass.txt") UTMASTG, $(grep -cE 'LDL|STL' "$out/sass.txt") LDL/STL"
fi
export PYTHONUNBUFFERED=1
python3 src/cuda/hopper/dev/check.py "$b/libhopperdev.so" "$@" 2>&1 | tee "$out/check.log"
if [[ " $* " == *" --sanitize "* ]]; then
    for tool in memcheck racecheck synccheck initcheck; do
        compute-sanitizer --tool $tool --print-limit 5 python3 src/cuda/hopper/dev/check.py \
            "$b/libhopperdev.so" --small 2>&1 | tail -4 | sed "s/^/$tool: /"
    done
fi
