#!/usr/bin/env python3
"""Paired comparison of libfattn builds (and of FP8 mode against native): the implementations'
calls alternate one by one on one stream, each between its own pair of CUDA events, in a fresh
shuffled order per round, so every pair of calls runs at the same clock and temperature. The
speed-up of an implementation over its reference is the median over rounds of the reference's
time divided by its own, with a bootstrap 95% interval.

gpu_bench.py times each implementation in blocks of 30 calls; between blocks the card's clock
follows its power limit, and two builds of identical code read up to 5% apart on one shape
(docs/perf-notes.md, v13). A difference this script's interval excludes is a real one.

  ab.py --variant base=build-var-base/src/libfattn.so --only seed d128   # fattn (FATTN_LIBRARY) vs base
  ab.py --variant lmma=build-var-lmma/src/libfattn.so --fp8 --only seed  # lmma_fp8 against fp8
  ab.py --shape 1,16384,16384,8,8,256,0,bf16 --rounds 400

References: a variant against fattn, a variant's FP8 mode (NAME_fp8) against fp8, and fp8 against
fattn. Milliseconds-long shapes only: a call shorter than its enqueue from Python leaves the queue
dry and the events time the host (the table's note says where).
"""
import argparse
import importlib.util
import os
import random
import statistics
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("gpu_bench", os.path.join(HERE, "gpu_bench.py"))
gb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gb)
torch, capi = gb.torch, gb.capi


def reference_of(name):
    if name == "fattn":
        return None
    if name == "fp8" or not name.endswith("_fp8"):
        return "fattn"
    return "fp8"


def paired(ref, other, draws=2000, seed=0):
    """The median of ref[i] / other[i] and a bootstrap 95% interval of that median."""
    ratios = [r / o for r, o in zip(ref, other)]
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return statistics.median(ratios), meds[int(0.025 * draws)], meds[int(0.975 * draws) - 1]


def time_pairs(fns, nsets, rounds, warmup_ms):
    """Per-call milliseconds of every implementation over `rounds` rounds, one call each per round
    in the round's shuffled order, after each has run alone for warmup_ms."""
    for fn in fns.values():
        gb.warm_up(fn, nsets, 5, warmup_ms)
    names = list(fns)
    events = {n: [] for n in names}
    for r in range(rounds):
        order = names[:]
        random.Random(r).shuffle(order)
        for n in order:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fns[n](r % nsets)
            b.record()
            events[n].append((a, b))
    torch.cuda.synchronize()
    return {n: [a.elapsed_time(b) for a, b in events[n]] for n in names}


def enqueue_ms(fns, nsets, calls=10):
    """The host's milliseconds to enqueue one call, the slowest implementation's median, each call
    made on an idle stream: timed inside the paired loop, the host waits whenever the launch queue
    is full and reads as slow as the device."""
    worst = 0.0
    for fn in fns.values():
        ts = []
        for i in range(calls):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn(i % nsets)
            ts.append((time.perf_counter() - t0) * 1e3)
        worst = max(worst, statistics.median(ts))
    torch.cuda.synchronize()
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=os.path.join(HERE, "shapes.tsv"))
    ap.add_argument("--only", nargs="*", help="keep shapes whose name contains one of these words")
    ap.add_argument("--shape", action="append", default=[], help="ad-hoc B,Sq,Skv,Hq,Hkv,D,causal,dtype")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=LIB", help="another libfattn build")
    ap.add_argument("--fp8", action="store_true", help="also FP8 mode (mode 1) of fattn and of each variant")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--warmup-ms", type=float, default=200.0)
    ap.add_argument("--layout", choices=("bhsd", "bshd"), default="bhsd")
    args = ap.parse_args()
    if args.rounds < 20:
        raise SystemExit(f"--rounds ({args.rounds}) must be at least 20")
    if not args.variant and not args.fp8:
        raise SystemExit("nothing to compare: give --variant NAME=LIB or --fp8")
    _, args.variant_libs = gb.load_variants(args.variant, ("fattn", "fp8"))
    shapes = gb.select_shapes(args)
    print(f"card: {torch.cuda.get_device_name()}; {args.rounds} rounds of one call each, shuffled per round; "
          f"layout {args.layout}; variants: {', '.join(args.variant)}", flush=True)
    print("| shape | implementation | median ms | TFLOPS | speed-up over | median ratio | 95% interval |")
    print("|---|---|---|---|---|---|---|")
    for s in shapes:
        sets = gb.make_sets(s, args.layout, "cuda")
        row = {}
        fns = gb.fattn_impls(s, sets, types.SimpleNamespace(variant_libs=args.variant_libs, fp8=args.fp8), row)
        if not fns:
            print(f"| {s.name} | - | - | - | - | - | {row.get('note', '')} |", flush=True)
            continue
        times = time_pairs(fns, len(sets), args.rounds, args.warmup_ms)
        host_ms = enqueue_ms(fns, len(sets))
        for name, ts in times.items():
            med = statistics.median(ts)
            ref = reference_of(name)
            ratio = paired(times[ref], ts) if ref in times else None
            cells = [s.name, name, f"{med:.3f}", f"{s.flops() / med / 1e9:.0f}", ref or "-",
                     f"{ratio[0]:.3f}" if ratio else "-", f"{ratio[1]:.3f}-{ratio[2]:.3f}" if ratio else "-"]
            print("| " + " | ".join(cells) + " |", flush=True)
        if host_ms >= gb.HOST_BOUND * min(statistics.median(ts) for ts in times.values()):
            print(f"| {s.name} | note | enqueue {host_ms:.3f} ms per call: host-bound, the times are the host's |")
        del sets, fns
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
