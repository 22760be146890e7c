#!/usr/bin/env bash
# Builds the plugin core's libFuzzer target with clang and runs it: `plugin/fuzz/run.sh [RUNS]`
# (default 1,000,000 executions). New inputs go to a scratch corpus, not to the committed seeds;
# a finding stops the run, leaves its input in the build folder and makes this script fail.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-1000000}
BUILD=${FUZZ_BUILD:-$ROOT/build-plugin-fuzz}
CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFATTN_ENABLE_CUDA=OFF -DFATTN_BUILD_TESTS=OFF -DFATTN_PLUGIN_FUZZ=ON >/dev/null
cmake --build "$BUILD" --target fattn_plugin_fuzz >/dev/null
mkdir -p "$BUILD/corpus" "$BUILD/artifacts"
"$BUILD/plugin/fattn_plugin_fuzz" -seed="${FUZZ_SEED:-12345}" -runs="$RUNS" -max_len=512 \
  -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/" "$BUILD/corpus" "$ROOT/plugin/fuzz/corpus"
