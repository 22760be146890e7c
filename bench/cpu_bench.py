#!/usr/bin/env python3
"""CPU speed of libfattn's fattn_cpu_forward next to torch's CPU scaled_dot_product_attention.

Both run in this process on the same inputs (BSHD for fattn, the same data as contiguous BHSD for
torch, its preferred layout), with the same number of threads. Prints one line per (dtype, causal)
with the median time of --repeats runs after --warmup, GFLOP/s (4*B*H*Sq*Skv*D, halved for
causal), the fattn/torch time ratio, and the relative L2 difference between the two outputs.

  python3 bench/cpu_bench.py                      # 1x2048x32x128, f32 and bf16
  python3 bench/cpu_bench.py --shape 1 4096 32 128 --dtypes f32 --causal both
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from fattn import capi  # noqa: E402

DTYPES = {"f32": (torch.float32, capi.DTYPE_F32), "f16": (torch.float16, capi.DTYPE_F16),
          "bf16": (torch.bfloat16, capi.DTYPE_BF16)}


def view(t):
    return capi.tensor(t.data_ptr(), t.stride(0), t.stride(1), t.stride(2))


def median_seconds(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=4, default=[1, 2048, 32, 128], metavar=("B", "S", "H", "D"))
    ap.add_argument("--dtypes", nargs="+", default=["f32", "bf16"], choices=sorted(DTYPES))
    ap.add_argument("--causal", choices=["no", "yes", "both"], default="no")
    ap.add_argument("--threads", type=int, default=0, help="0: torch's default thread count")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()

    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    torch.manual_seed(seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    lib = capi.load_library()
    b, s, h, d = args.shape
    causals = {"no": [False], "yes": [True], "both": [False, True]}[args.causal]
    print(f"fattn {capi.version()} ({lib._name}); torch {torch.__version__}; threads {threads}; "
          f"cpus {os.cpu_count()}; seed {seed}")
    print(f"shape BSHD {b}x{s}x{h}x{d}")
    print(f"{'dtype':5} {'causal':6} {'fattn ms':>9} {'GFLOP/s':>8} {'torch ms':>9} {'GFLOP/s':>8} "
          f"{'ratio':>6} {'rel L2':>9}")
    failed = False
    for name in args.dtypes:
        tdtype, fdtype = DTYPES[name]
        q, k, v = (torch.randn(b, s, h, d).to(tdtype) for _ in range(3))
        o = torch.empty_like(q)
        qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
        for causal in causals:
            params = capi.make_params(batch=b, seqlen_q=s, seqlen_kv=s, heads_q=h, heads_kv=h,
                                      head_dim=d, dtype=fdtype, q=view(q), k=view(k), v=view(v),
                                      o=view(o), causal=causal)
            t_fattn = median_seconds(lambda: capi.cpu_forward(params, threads), args.warmup,
                                     args.repeats)
            ref = None

            def run_torch():
                nonlocal ref
                ref = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)

            t_torch = median_seconds(run_torch, args.warmup, args.repeats)
            ours = o.transpose(1, 2).double()
            rel = ((ours - ref.double()).norm() / ref.double().norm()).item()
            flops = 4.0 * b * h * s * s * d / (2 if causal else 1)
            print(f"{name:5} {str(causal):6} {t_fattn * 1e3:9.2f} {flops / t_fattn / 1e9:8.1f} "
                  f"{t_torch * 1e3:9.2f} {flops / t_torch / 1e9:8.1f} {t_fattn / t_torch:6.2f} "
                  f"{rel:9.2e}")
            bound = {"f32": 1e-5, "f16": 2e-3, "bf16": 1.6e-2}[name]
            failed |= not rel <= bound
    if failed:
        print("FAIL: fattn and torch disagree beyond the dtype's bound")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
