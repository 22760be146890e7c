#!/usr/bin/env bash
# Development loop for the Hopper kernel on the GPU machine: build a stand-alone library from
# src/cuda/hopper (with dev/shim.c standing in for the core), check it against float64 torch,
# time it against SDPA's cuDNN backend, and list its tensor-core instructions.
# Usage: scripts/hopper_dev.sh [--bench] [--sanitize]   (logs under $OUT when set)
# HOPPER_VARIANTS="name:nvcc flags;name2:flags" also builds, checks and times tuning variants in the
# same run, e.g. HOPPER_VARIANTS="bn176:-DCFG128_BN=176".
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build-hopper}
b=build-hopper/dev
mkdir -p "$b" "$out"
build() { # name, extra flags...
    local name=$1
    shift
    rm -f "$b/libhopper$name.so"
    nvcc -std=c++17 -O3 -Xcompiler -fPIC -shared -gencode=arch=compute_90a,code=sm_90a -Iinclude -Xptxas -v "$@" \
        src/cuda/hopper/hopper.cu src/cuda/hopper/dev/shim.c -o "$b/libhopper$name.so" >"$out/ptxas$name.log" 2>&1 ||
        { cat "$out/ptxas$name.log"; exit 1; }
    echo "$name: $(grep -cE '[1-9][0-9]* bytes spill' "$out/ptxas$name.log") kernels spill"
}
build dev &
libs=("$b/libhopperdev.so")
IFS=';' read -ra variants <<<"${HOPPER_VARIANTS:-}"
for v in "${variants[@]}"; do
    eval "flags=(${v#*:})"
    build "${v%%:*}" "${flags[@]}" &
    libs+=("$b/libhopper${v%%:*}.so")
done
wait
for l in "${libs[@]}"; do [[ -f $l ]] || { echo "build of $l failed"; exit 1; }; done
grep -E "spill|registers" "$out/ptxasdev.log" | sort | uniq -c
if command -v cuobjdump >/dev/null; then
    cuobjdump -sass "$b/libhopperdev.so" >"$out/sass.txt"
    echo "SASS: $(grep -c HGMMA "$out/sass.txt") HGMMA, $(grep -c UTMALDG "$out/sass.txt") UTMALDG," \
        "$(grep -c UTMASTG "$out/sass.txt") UTMASTG, $(grep -cE 'LDL|STL' "$out/sass.txt") LDL/STL"
fi
export PYTHONUNBUFFERED=1
python3 src/cuda/hopper/dev/check.py "${libs[@]}" "$@" 2>&1 | tee "$out/check.log"
if [[ " $* " == *" --sanitize "* ]]; then
    for tool in memcheck racecheck synccheck initcheck; do
        compute-sanitizer --tool $tool --print-limit 5 python3 src/cuda/hopper/dev/check.py \
            "$b/libhopperdev.so" --small 2>&1 | tail -4 | sed "s/^/$tool: /"
    done
fi
