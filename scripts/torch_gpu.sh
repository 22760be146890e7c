#!/usr/bin/env bash
# The PyTorch op's device call: the python/tests suites on the GPU (Hopper dispatch, then forced
# portable kernel for the CUDA-marked tests), then the transformer-block example at the seed's
# shape with timings and its ONNX export. Logs go to $OUT (or build-torch-gpu-out/, which git
# ignores).
#
# PARTS="auto portable example" picks what runs (default: all three).
# libfattn: a prebuilt one in .stage/torch/ (built on the CPU machine with
#   cmake -B build-torch-gpu -G Ninja -DFATTN_CUDA_ARCHS=90a-real && ninja -C build-torch-gpu fattn
#   fattn_plugin_core_shared, then copied there; carry .stage/torch), else it is built here.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=${OUT:-$ROOT/build-torch-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$ROOT/python
t0=$(date +%s)
say() { echo "[$(($(date +%s) - t0))s] $*" | tee -a "$OUT/summary.txt"; }

say "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); $(python3 -c 'import torch, onnx, onnxscript, onnxruntime as o; print("torch", torch.__version__, "onnx", onnx.__version__, "onnxscript", onnxscript.__version__, "onnxruntime", o.__version__)')"
LIB=$ROOT/.stage/torch
if [ ! -f "$LIB/libfattn.so" ]; then
  LIB=$ROOT/build-torch-gpu-remote
  cmake -S . -B "$LIB" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATTN_CUDA_ARCHS=90a-real \
    >"$OUT/build.log" 2>&1 &&
    cmake --build "$LIB" --target fattn fattn_plugin_core_shared >>"$OUT/build.log" 2>&1 ||
    { say "BUILD FAILED"; tail -30 "$OUT/build.log"; exit 1; }
  LIB=$LIB/src
  cp "$ROOT/build-torch-gpu-remote/plugin/libfattn_plugin_core.so" "$LIB/"
  say "built libfattn here"
fi
export FATTN_LIBRARY=$LIB/libfattn.so FATTN_PLUGIN_CORE_LIBRARY=$LIB/libfattn_plugin_core.so
export LD_LIBRARY_PATH=$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

PARTS=${PARTS:-auto portable example}
if [[ " $PARTS " == *" auto "* ]]; then
  timeout 240 python3 -m pytest -q -p no:cacheprovider -rs python/tests >"$OUT/pytest-auto.log" 2>&1
  say "pytest (all suites, default dispatch): rc=$? $(tail -1 "$OUT/pytest-auto.log")"
  grep -E "^(FAILED|ERROR)" "$OUT/pytest-auto.log" | head -20 | tee -a "$OUT/summary.txt"
fi

if [[ " $PARTS " == *" portable "* ]]; then
  FATTN_FORCE_PORTABLE=1 timeout 90 python3 -m pytest -q -p no:cacheprovider -rs -m cuda \
    -k "not compile" python/tests >"$OUT/pytest-portable.log" 2>&1
  say "pytest (cuda tests, FATTN_FORCE_PORTABLE=1): rc=$? $(tail -1 "$OUT/pytest-portable.log")"
  grep -E "^(FAILED|ERROR)" "$OUT/pytest-portable.log" | head -20 | tee -a "$OUT/summary.txt"
fi

if [[ " $PARTS " == *" example "* ]]; then
  timeout 180 python3 examples/transformer_block/transformer_block.py --seq 15708 \
    --export /tmp/block.onnx >"$OUT/example.log" 2>&1
  say "example (1x15708x4096 bf16): rc=$?"
  grep -vE "^\[torch.onnx\]|torchvision|^W[0-9]" "$OUT/example.log" | tail -12 | tee -a "$OUT/summary.txt"
fi
