#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run):
#   1. install dependencies (scripts/install-deps.sh; FATTN_SKIP_DEPS=1 skips it);
#   2. a sanitized build (ASan+UBSan, no CUDA) and `ctest -LE python` on it;
#   3. a plain Release build (CUDA when nvcc is found) and every test on it, `python` label
#      included;
#   4. the shell blocks of README.md and docs/*.md (tests/docs/test_doc_blocks.py), run from
#      the repository root; FATTN_SKIP_DOCS=1 skips this stage;
#   5. one table (scripts/test_summary.py): every CTest label and every pytest suite of both
#      builds with passed / failed / skipped counts and the skip reasons grouped, then what was
#      not built and why, then the plain total "N passed, N failed, N skipped".
# The exit status is non-zero if any build or test failed.
# Build folders go under $FATTN_BUILD_ROOT (default: build-test/ in the repository).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builds=${FATTN_BUILD_ROOT:-$root/build-test}
jobs=$(nproc 2>/dev/null || echo 2)
status=0

if [ "${FATTN_SKIP_DEPS:-0}" != 1 ]; then
  bash "$root/scripts/install-deps.sh" || exit 1
fi
generator=()
if command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi

run_suite() { # name, ctest args..., -- cmake args...
  local name=$1
  shift
  local ctest_args=()
  while [ "$1" != "--" ]; do
    ctest_args+=("$1")
    shift
  done
  shift
  local dir=$builds/$name
  summary_args+=("$name=$dir")
  echo "== $name: configure and build in $dir"
  mkdir -p "$dir"
  rm -rf "$dir/fattn-build-failed" "$dir/ctest-junit.xml" "$dir/pytest-reports"
  if ! cmake -S "$root" -B "$dir" "${generator[@]}" "$@" || ! cmake --build "$dir" -j "$jobs"; then
    echo "== $name: BUILD FAILED"
    touch "$dir/fattn-build-failed"
    status=1
    return
  fi
  echo "== $name: ctest ${ctest_args[*]}"
  # Whole outputs in the JUnit report: a skipped test's reason may come late in its output.
  if ! (cd "$dir" && ctest --output-on-failure -j "$jobs" --output-junit ctest-junit.xml \
          --test-output-size-passed 65536 --test-output-size-failed 65536 "${ctest_args[@]}"); then
    status=1
  fi
}
summary_args=()

run_suite sanitized -LE python -- -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFATTN_SANITIZE=ON \
  -DFATTN_ENABLE_CUDA=OFF
cuda=OFF
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda=ON
  export PATH=$PATH:/usr/local/cuda/bin
fi
run_suite release -- -DCMAKE_BUILD_TYPE=Release -DFATTN_ENABLE_CUDA=$cuda \
  "-DFATTN_CUDA_ARCHS=90a-real;80-real"

if [ "${FATTN_SKIP_DOCS:-0}" != 1 ]; then
  docs=$builds/docs
  rm -rf "$docs" && mkdir -p "$docs/pytest-reports"
  summary_args+=("docs=$docs")
  echo "== docs: every shell block of README.md and docs/*.md"
  if ! (cd "$root" && python3 -m pytest -q -p no:cacheprovider -rs \
          --junitxml="$docs/pytest-reports/doc_blocks.xml" tests/docs/test_doc_blocks.py); then
    status=1
  fi
fi
if [ $status -eq 0 ]; then
  echo "== scripts/test.sh: all builds and tests passed"
else
  echo "== scripts/test.sh: FAILED (see above)"
fi
python3 "$root/scripts/test_summary.py" "${summary_args[@]}" || status=1
exit $status
