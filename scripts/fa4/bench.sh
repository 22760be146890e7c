#!/usr/bin/env bash
# Device: the acceptance tables against FlashAttention-4 (issue #12). FA4 from scripts/fa4/install.sh
# (this call carries ".fa4b" right after the park.sh call, or FA4 is already in /tmp/site),
# libfattn built by scripts/gpu_run.sh (its tests and compute-sanitizer left out), then
# bench/gpu_bench.py --fa4-table once per shapes file. $OUT gets fa4-<set>.md per set, summary.txt
# and logs.tgz (the device tool returns at most 8 files).
#   FA4_SETS="shapes headdims short"   shape files bench/<set>.tsv, in order
#   FATTN_COMMIT=<hash>          the commit the tables name (the GPU machine's copy has no .git)
#   BENCH_ARGS=...               more arguments of gpu_bench.py (e.g. --rounds 7)
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-$PWD/build-gpu/fa4}
mkdir -p "$OUT"
work=$(mktemp -d)
summary=$OUT/summary.txt
. scripts/fa4/install.sh >"$work/install.log" 2>&1
rc=$?
cat "$work/install.log" >"$summary"
# The short shapes take less GPU time than one enqueue from Python: they are timed by graph replay.
set_args() { if [ "$1" = short ]; then echo "--graph"; fi; }
if [ "$rc" = 0 ]; then
  for set in ${FA4_SETS:-shapes headdims short}; do
    SKIP_TESTS=1 SKIP_SANITIZER=1 BENCH_PATHS=auto OUT="$work/$set" \
      BENCH_ARGS="--shapes bench/$set.tsv --fa4-table $work/fa4-$set.md $(set_args "$set") ${BENCH_ARGS:-}" \
      bash scripts/gpu_run.sh >"$work/$set.log" 2>&1
    echo "== $set: rc=$?" >>"$summary"
    if [ -f "$work/fa4-$set.md" ]; then
      cp "$work/fa4-$set.md" "$OUT/" && cat "$work/fa4-$set.md" >>"$summary"
    else
      rc=1
      tail -8 "$work/$set.log" >>"$summary"
    fi
  done
fi
tar czf "$OUT/logs.tgz" -C "$work" .
cat "$summary"
exit "$rc"
