#!/usr/bin/env bash
# Here, before the device calls: the pinned FlashAttention-4 wheels for the GPU machine (Python
# 3.12, x86-64), which has no package index, packed for two device calls. A call carries at most
# 64 MiB of working tree and the cu13 library wheel alone is 92 MB, so its bytes are cut in two:
#   .fa4/    the wheels as downloaded (never carried)
#   .fa4a/   part-a, the wheel's first bytes            (call 1 carries it: scripts/fa4/park.sh)
#   .fa4b/   part-b, the rest, the sha256 of the whole wheel and the other wheels
#                                                       (call 2 carries it: scripts/fa4/install.sh)
# The cut makes both folders the same size (~49 MiB). FA4_WHEELS=DIR takes the wheels from a folder
# instead of the index (pip download --no-index --find-links DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."

pins=(flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1
      nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1
      apache-tvm-ffi==0.1.15.post2 torch-c-dlpack-ext==0.1.5 quack-kernels==0.6.5
      protobuf==7.36.2 typing_extensions==4.16.0)
source_args=()
[ -n "${FA4_WHEELS:-}" ] && source_args=(--no-index --find-links "$FA4_WHEELS")
# pip matches a manylinux tag exactly: name the three these wheels carry.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 \
  -d .fa4 "${source_args[@]}" "${pins[@]}"

found=(.fa4/nvidia_cutlass_dsl_libs_cu13-4.8.1-*.whl)
if [ "${#found[@]}" -ne 1 ] || [ ! -f "${found[0]}" ]; then
  echo "prepare: want one nvidia_cutlass_dsl_libs_cu13-4.8.1 wheel in .fa4/, found: ${found[*]}" >&2
  exit 1
fi
big=${found[0]}
small=()
for w in .fa4/*.whl; do
  [ "$w" = "$big" ] || small+=("$w")
done
if [ "${#small[@]}" -ne $((${#pins[@]} - 1)) ]; then
  echo "prepare: .fa4/ holds ${#small[@]} wheels besides cu13, want $((${#pins[@]} - 1)) (one per pin): ${small[*]}" >&2
  exit 1
fi

big_bytes=$(stat -c %s "$big")
small_bytes=$(cat "${small[@]}" | wc -c)
cut=$(((big_bytes + small_bytes) / 2))
limit=$((50 << 20))
if [ "$cut" -ge "$limit" ]; then
  echo "prepare: each carried folder would hold $cut bytes, over $limit" >&2
  exit 1
fi
rm -rf .fa4a .fa4b
mkdir -p .fa4a .fa4b
head -c "$cut" "$big" >.fa4a/part-a
tail -c +$((cut + 1)) "$big" >.fa4b/part-b
(cd .fa4 && sha256sum "$(basename "$big")") >.fa4b/cu13.sha256
cp "${small[@]}" .fa4b/
echo "prepare: $(basename "$big") ($big_bytes bytes) cut at $cut;" \
  ".fa4a $(du -sb .fa4a | cut -f1) bytes, .fa4b $(du -sb .fa4b | cut -f1) bytes"
