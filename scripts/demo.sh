#!/usr/bin/env bash
# The main job: builds libfattn (Release; CUDA when nvcc is found) and runs fattn-demo, which
# computes attention on a demo problem on the GPU when there is one (else on the CPU), checks it
# against a float64 reference and prints the time. Arguments go to fattn-demo (--help lists
# them). The build goes to $FATTN_DEMO_BUILD (default: build-demo/ in the repository).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FATTN_DEMO_BUILD:-$root/build-demo}
cuda=OFF
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda=ON
  export PATH=$PATH:/usr/local/cuda/bin
fi
generator=()
if command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFATTN_ENABLE_CUDA=$cuda \
  -DFATTN_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target fattn-demo -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
exec "$build/examples/fattn-demo" "$@"
