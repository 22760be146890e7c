#!/usr/bin/env bash
# Builds the libFuzzer target over fattn-onnx's model reader (fuzz_model.c: parse, inspect,
# fuse + prepare, serialise) with clang, ASan and UBSan, and runs it from the seed corpus.
#
#   tools/fattn-onnx/fuzz/run.sh [RUNS] [libFuzzer options...]     (RUNS defaults to 500000)
#
# Reproducible: the libFuzzer seed is FATTN_FUZZ_SEED (default 1); the build, the working corpus
# and any crash-* artifact go to FATTN_FUZZ_BUILD (default build-onnx-fuzz/ at the repository
# root). Replay an artifact with "$FATTN_FUZZ_BUILD/fuzz_model crash-...". Exits 77 (skipped)
# when clang cannot link libFuzzer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
root=$(cd "$src/../.." && pwd)
build=${FATTN_FUZZ_BUILD:-$root/build-onnx-fuzz}
runs=${1:-500000}
shift || true
cc=${FATTN_FUZZ_CC:-clang}

if ! command -v "$cc" >/dev/null || ! echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){return 0;}' |
    "$cc" -x c -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
  echo "fuzz: $cc with libFuzzer is not available; skipped"
  exit 77
fi
proto=$(python3 -c "import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), 'onnx.proto'))")
mkdir -p "$build/gen" "$build/corpus"
cp "$proto" "$build/gen/onnx.proto"
protoc-c --proto_path="$build/gen" --c_out="$build/gen" "$build/gen/onnx.proto"
"$cc" -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$build/gen" -I"$src" \
  "$src"/util.c "$src"/model.c "$src"/graph.c "$src"/passes.c "$src"/fuse.c \
  "$src"/inspect.c "$src"/symbolic.c \
  "$here"/fuzz_model.c "$build/gen/onnx.pb-c.c" -lprotobuf-c -lm -o "$build/fuzz_model"
cp "$here"/corpus/*.onnx "$src"/tests/fixtures/*.onnx "$build/corpus/"
exec "$build/fuzz_model" -runs="$runs" -seed="${FATTN_FUZZ_SEED:-1}" -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$build/" "$@" "$build/corpus"
