#!/usr/bin/env bash
# Every GPU check of the project in one device call, each part through its own script:
#   hopper  scripts/hopper_dev.sh   GPU test matrix, compute-sanitizer and benchmark on the Hopper path
#   plugin  scripts/plugin_gpu.sh   TensorRT plugin conformance host (needs carry [".stage/trt"])
#   torch   scripts/torch_gpu.sh    the PyTorch op's tests and the transformer-block example
#   demo    scripts/demo.sh         the README's main job on the GPU
#   fa4     scripts/fa4/bench.sh    the acceptance tables against FlashAttention-4 (not a default
#                                   part: needs the wheels, carry [".fa4b"] after scripts/fa4/park.sh)
# The device tool returns at most 8 files, so the parts' logs are packed into one logs.tgz next to
# summary.txt (all parts' summaries) and the benchmark tables. PARTS picks and orders the parts
# (default: all four, ~10 minutes: split it over two calls, e.g. PARTS=hopper then
# PARTS="plugin torch demo").
set -u
cd "$(dirname "$0")/.." || exit 1
final=${OUT:-$PWD/build-device-all}
mkdir -p "$final"
work=$(mktemp -d)
summary=$final/summary.txt
: >"$summary"

run_part() { # name, seconds, command...
  local name=$1 limit=$2
  shift 2
  mkdir -p "$work/$name"
  local t0=$SECONDS
  OUT=$work/$name timeout "$limit" "$@" >"$work/$name/console.log" 2>&1
  local rc=$?
  {
    echo "== $name: rc=$rc ($((SECONDS - t0)) s)"
    if [ -f "$work/$name/summary.txt" ]; then cat "$work/$name/summary.txt"; else tail -8 "$work/$name/console.log"; fi
  } | tee -a "$summary"
}

for part in ${PARTS:-hopper plugin torch demo}; do
  case $part in
    hopper) run_part hopper 420 bash scripts/hopper_dev.sh ;;
    plugin) run_part plugin 300 bash scripts/plugin_gpu.sh ;;
    torch) PARTS="auto example" run_part torch 300 bash scripts/torch_gpu.sh ;;
    demo) run_part demo 180 bash scripts/demo.sh --device cuda ;;
    fa4) run_part fa4 540 bash scripts/fa4/bench.sh ;;
    *) echo "device_all: unknown part '$part' (hopper, plugin, torch, demo, fa4)" | tee -a "$summary" ;;
  esac
done
cp "$work"/hopper/bench-*.md "$work"/fa4/fa4-*.md "$final"/ 2>/dev/null
tar czf "$final/logs.tgz" -C "$work" .
echo "logs: $final/logs.tgz"
