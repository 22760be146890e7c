#!/usr/bin/env bash
# Device: Nsight Compute over one launch of each implementation's attention kernel, to see where
# the time goes (issue slots, pipes, stall reasons) side by side. libfattn is built by
# scripts/gpu_run.sh (its tests, sanitizer and benchmark left out); FA4 is profiled where
# scripts/fa4/install.sh has put it in /tmp/site (or this call carries ".fa4b" after park.sh).
#   PROF_SHAPES="1,15708,32,128 1,16384,16,128:causal"   B,S,H,D[:causal] per profile
#   PROF_IMPLS="fattn fa4"    bench/once.py's implementations (fattn, fattn-fp8, fa4)
#   PROF_SET=full             ncu section set
# $OUT gets summary.txt (the headline metrics of every profile) and profiles.tgz (each profile's
# full details page and its per-instruction SASS counters, where this ncu can print them).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$PWD/build-gpu/prof}
mkdir -p "$OUT"
work=$(mktemp -d)
summary=$OUT/summary.txt
SKIP_TESTS=1 SKIP_SANITIZER=1 SKIP_BENCH=1 OUT="$work/build" bash scripts/gpu_run.sh >"$work/build.log" 2>&1 || {
  tail -20 "$work/build.log" | tee "$summary"
  exit 1
}
head -3 "$work/build/summary.txt" >"$summary"
if [ -f /tmp/site/.fa4-installed ] || [ -d .fa4b ]; then
  . scripts/fa4/install.sh >>"$work/fa4-install.log" 2>&1 || echo "fa4: not installed (fa4-install.log)" >>"$summary"
fi
export FATTN_LIBRARY=$PWD/build-gpu/src/libfattn.so
# The headline of a details page: duration, issue and pipe use, occupancy, the top stall reasons.
pick='Duration|Elapsed Cycles|Executed Ipc A|Issue Slots Busy|Issued Warp Per|No Eligible|Active Warps Per|Eligible Warps|Registers Per|Executed Instructions  |Compute \(SM\) Th|Memory Throughput|L1/TEX Hit|L2 Hit|Warp Cycles Per Issued|Tensor|Stall'
for shape in ${PROF_SHAPES:-1,15708,32,128 1,16384,16,128:causal}; do
  dims=${shape%%:*}
  flags=""
  [ "$shape" != "$dims" ] && flags="--${shape#*:}"
  for impl in ${PROF_IMPLS:-fattn fa4}; do
    name="${impl}_${dims//,/x}${flags:+_causal}"
    timeout 300 ncu --set "${PROF_SET:-full}" --import-source no -k 'regex:hopper_fwd|[Ff]lash' \
      --launch-skip 1 --launch-count 1 -f -o "$work/$name" \
      python3 bench/once.py "$dims" $flags --impl "$impl" >"$work/$name.log" 2>&1
    echo "== $name: rc=$?" >>"$summary"
    if [ -f "$work/$name.ncu-rep" ]; then
      ncu --import "$work/$name.ncu-rep" --page details >"$work/$name.details.txt" 2>&1
      ncu --import "$work/$name.ncu-rep" --page source --csv --print-source sass >"$work/$name.sass.csv" 2>&1
      grep -E "^  [a-zA-Z_].*\(|$pick" "$work/$name.details.txt" | cut -c1-150 >>"$summary"
    else
      tail -5 "$work/$name.log" >>"$summary"
    fi
  done
done
rm -f "$work"/*.ncu-rep
tar czf "$OUT/profiles.tgz" -C "$work" .
cat "$summary"
