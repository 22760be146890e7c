#!/usr/bin/env bash
# The main job: builds libfattn (Release; CUDA when nvcc is found) and runs fattn-demo, which
# computes attention on a demo problem on the GPU when there is one (else on the CPU), checks it
# against a float64 reference and prints the time. Arguments go to fattn-demo (--help lists
# them). The build goes to $FATTN_DEMO_BUILD (default: build-demo/ in the repository); its
# progress and any compiler errors go to stderr, the demo's own output to stdout.
# FATTN_ENABLE_CUDA=OFF builds without the CUDA kernels even where nvcc is found.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FATTN_DEMO_BUILD:-$root/build-demo}
cuda=OFF
why="nvcc not found"
if [ "${FATTN_ENABLE_CUDA:-ON}" = OFF ]; then
  why="FATTN_ENABLE_CUDA=OFF"
elif command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda=ON
  export PATH=$PATH:/usr/local/cuda/bin
fi
generator=()
if command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi
if [ ! -e "$build/examples/fattn-demo" ]; then
  if [ $cuda = ON ]; then
    echo "demo.sh: first build in $build, with the CUDA kernels (nvcc found): a few minutes" >&2
  else
    echo "demo.sh: first build in $build (CPU only: $why)" >&2
  fi
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Configure's chatter is kept back unless it fails; the build's progress lines are shown.
if ! cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
     -DFATTN_ENABLE_CUDA=$cuda -DFATTN_BUILD_TESTS=OFF >"$log" 2>&1; then
  cat "$log" >&2
  echo "demo.sh: configuring the build in $build failed (CMake's output above)" >&2
  exit 1
fi
if ! cmake --build "$build" --target fattn-demo -j "$(nproc 2>/dev/null || echo 2)" >&2; then
  echo "demo.sh: building fattn-demo failed (compiler output above)" >&2
  exit 1
fi
exec "$build/examples/fattn-demo" "$@"
