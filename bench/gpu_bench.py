#!/usr/bin/env python3
"""GPU benchmark: fattn against torch SDPA (cuDNN backend and flash backend) on the same inputs.

Protocol: CUDA events around each call, warm-up, median of >= 20 runs, inputs
rotated over enough sets that the L2 cache cannot hold them, all three implementations on the
same tensors in one process. TFLOPS = 4*B*Hq*Sq*Skv*D / time (halved for causal).

Layout: tensors are allocated BHSD (SDPA's own layout) and fattn gets the same memory through
BHSD strides, so neither side pays for a copy; --layout bshd allocates BSHD instead (the seed's
layout) and hands SDPA transposed views.

  gpu_bench.py                      # every shape of bench/shapes.tsv
  gpu_bench.py --only seed d128     # shapes whose name contains a word
  gpu_bench.py --shape 2,4096,4096,16,16,128,1,bf16   # ad hoc: B,Sq,Skv,Hq,Hkv,D,causal,dtype
  gpu_bench.py --variant v5=old/libfattn.so            # another libfattn build, timed alongside

Timings drift by several percent over a run (clocks, temperature; the implementation timed later
in a sequence was seen up to 8% slower), so every implementation of a shape is timed in --rounds
interleaved rounds, each round starting with the next implementation, and the median is taken over
all rounds. With N implementations, --rounds N puts each one in every position once.
"""
import argparse
import csv
import ctypes
import datetime
import math
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def _load_capi():
    """python/fattn/capi.py on its own (standard library only), without the package's __init__,
    which also registers the PyTorch op and the ONNX exporter: the benchmark needs neither."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("fattn_capi", os.path.join(REPO, "python", "fattn", "capi.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


capi = _load_capi()

DTYPES = {"bf16": (torch.bfloat16, capi.DTYPE_BF16), "fp16": (torch.float16, capi.DTYPE_F16),
          "f16": (torch.float16, capi.DTYPE_F16), "fp32": (torch.float32, capi.DTYPE_F32),
          "f32": (torch.float32, capi.DTYPE_F32)}
ROTATE_BYTES = 256 << 20  # several times the 50 MB L2 of an H100
MAX_SET_MEMORY = 24 << 30


class Shape:
    def __init__(self, name, b, sq, skv, hq, hkv, d, causal, dtype):
        for field, text in dict(B=b, Sq=sq, Skv=skv, Hq=hq, Hkv=hkv, D=d).items():
            if not str(text).isdigit() or int(text) == 0:
                raise SystemExit(f"shape {name}: {field} ({text!r}) is not a positive integer")
        if str(causal) not in ("0", "1"):
            raise SystemExit(f"shape {name}: causal ({causal!r}) is not 0 or 1")
        if dtype not in DTYPES:
            raise SystemExit(f"shape {name}: dtype ({dtype!r}) is not one of {', '.join(DTYPES)}")
        self.name, self.b, self.sq, self.skv = name, int(b), int(sq), int(skv)
        self.hq, self.hkv, self.d, self.causal, self.dtype = int(hq), int(hkv), int(d), int(causal), dtype

    def flops(self):
        f = 4.0 * self.b * self.hq * self.sq * self.skv * self.d
        return f / 2 if self.causal else f


def read_shapes(path):
    shapes = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            f = line.split("\t")
            if len(f) < 9:
                raise SystemExit(f"{path}: line {line!r} has {len(f)} tab-separated fields, not 9")
            shapes.append(Shape(*f[:9]))
    return shapes


def parse_adhoc(text):
    f = text.split(",")
    if len(f) != 8:
        raise SystemExit(f"--shape {text!r}: want B,Sq,Skv,Hq,Hkv,D,causal,dtype")
    name = "adhoc_" + "x".join(f[:6]) + ("_causal" if f[6] == "1" else "") + "_" + f[7]
    return Shape(name, *f)


def make_sets(s, layout, device):
    tdtype = DTYPES[s.dtype][0]
    es = torch.finfo(tdtype).bits // 8
    set_bytes = es * s.d * (2 * s.b * s.sq * s.hq + 2 * s.b * s.skv * s.hkv)
    n = max(2, math.ceil(ROTATE_BYTES / set_bytes))
    n = max(1, min(n, MAX_SET_MEMORY // set_bytes))
    sets = []
    for _ in range(n):
        def t(seq, heads):
            if layout == "bhsd":
                return torch.randn(s.b, heads, seq, s.d, device=device, dtype=tdtype)
            return torch.randn(s.b, seq, heads, s.d, device=device, dtype=tdtype).transpose(1, 2)
        q, k, v = t(s.sq, s.hq), t(s.skv, s.hkv), t(s.skv, s.hkv)
        o = torch.empty_like(q)
        sets.append((q, k, v, o))
    return sets


def view(t):
    """fattn_tensor for a (B, H, S, D) torch view: strides batch, seq, head."""
    st = t.stride()
    return capi.tensor(t.data_ptr(), st[0], st[2], st[1])


def fattn_params(s, q, k, v, o, mode=capi.MODE_NATIVE):
    return capi.make_params(batch=s.b, seqlen_q=s.sq, seqlen_kv=s.skv, heads_q=s.hq,
                            heads_kv=s.hkv, head_dim=s.d, dtype=DTYPES[s.dtype][1],
                            q=view(q), k=view(k), v=view(v), o=view(o), causal=bool(s.causal), mode=mode)


def time_runs(fn, nsets, warmup, reps):
    """Milliseconds of `reps` calls, each between its own pair of events, queued back to back so
    host overhead overlaps device work; call i uses input set i % nsets."""
    for i in range(warmup):
        fn(i % nsets)
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(reps)]
    for i, (a, b) in enumerate(events):
        a.record()
        fn(i % nsets)
        b.record()
    torch.cuda.synchronize()
    return [a.elapsed_time(b) for a, b in events]


def sdpa_fn(sets, s, backend):
    gqa = s.hq != s.hkv

    def run(i):
        q, k, v, _ = sets[i]
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=bool(s.causal),
                                                  enable_gqa=gqa)
    return run


def bench_shape(s, args, stream):
    sets = make_sets(s, args.layout, "cuda")
    params = [fattn_params(s, *st) for st in sets]
    row = {"name": s.name, "B": s.b, "Sq": s.sq, "Skv": s.skv, "Hq": s.hq, "Hkv": s.hkv,
           "D": s.d, "causal": s.causal, "dtype": s.dtype, "sets": len(sets)}
    # Before the workspace query, which raises on parameters libfattn rejects (heads_q not a
    # multiple of heads_kv): a refused shape becomes a note, not the end of the run.
    status, msg = capi.cuda_supported(params[0])
    if status != capi.OK:
        row["note"] = f"fattn: {capi.status_name(status)}: {msg}"
        return row
    ws_bytes = capi.cuda_workspace_size(params[0])
    ws = torch.empty(ws_bytes, dtype=torch.uint8, device="cuda") if ws_bytes else None
    ws_ptr = ws.data_ptr() if ws is not None else None
    pptrs = [ctypes.byref(p) for p in params]

    def fattn_fn(lib, pptrs=pptrs, ws_ptr=ws_ptr, ws_bytes=ws_bytes):
        def run(i):
            st = lib.fattn_cuda_forward(pptrs[i], ws_ptr, ws_bytes, stream)
            if st != capi.OK:
                raise capi.FattnError(st, capi.status_name(st), lib.fattn_last_error().decode())
        return run

    fattn_run = fattn_fn(capi.load_library())
    results = {"fattn": fattn_run}
    for name, lib in args.variant_libs.items():
        results[name] = fattn_fn(lib)
    if args.fp8:
        # FP8 mode on the same tensors, quantisation pass included in its time.
        fp8_params = [fattn_params(s, *st, mode=capi.MODE_FP8) for st in sets]
        status, msg = capi.cuda_supported(fp8_params[0])
        if status == capi.OK:
            fp8_bytes = capi.cuda_workspace_size(fp8_params[0])
            fp8_ws = torch.empty(max(fp8_bytes, 1), dtype=torch.uint8, device="cuda")
            results["fp8"] = fattn_fn(capi.load_library(), [ctypes.byref(p) for p in fp8_params],
                                      fp8_ws.data_ptr(), fp8_bytes)
        else:
            row["note"] = f"fp8: {capi.status_name(status)}: {msg}"
    results["cudnn"] = sdpa_fn(sets, s, SDPBackend.CUDNN_ATTENTION)
    results["flash"] = sdpa_fn(sets, s, SDPBackend.FLASH_ATTENTION)
    times = {key: [] for key in results}
    keys = list(results)
    for r in range(args.rounds):
        # Each round starts one implementation later, so none is always timed first or last.
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            if times[key] is None:
                continue
            try:
                times[key] += time_runs(results[key], len(sets), args.warmup, args.reps)
            except Exception as err:  # a backend that refuses the shape is reported, not fatal
                times[key] = None
                row["note"] = (row.get("note", "") + f" {key}: {type(err).__name__}: {str(err)[:80]}").strip()
    for key, t in times.items():
        med = statistics.median(t) if t else float("nan")
        row[f"{key}_ms"] = med
        row[f"{key}_tflops"] = s.flops() / (med * 1e-3) / 1e12
        if t:
            row[f"{key}_spread"] = (max(t) - min(t)) / med
    # Sanity: fattn and the flash backend on the same set agree (SDPA's causal is top-left
    # aligned, fattn's bottom-right: identical only when Sq == Skv).
    if not math.isnan(row.get("flash_ms", float("nan"))) and (not s.causal or s.sq == s.skv):
        q, k, v, o = sets[0]
        fattn_run(0)
        ref = results["flash"](0)
        torch.cuda.synchronize()
        row["rel_err_vs_flash"] = ((o.float() - ref.float()).norm() / ref.float().norm()).item()
    if "fp8_ms" in row and not math.isnan(row["fp8_ms"]):
        row["ratio_fp8_fattn"] = row["fattn_ms"] / row["fp8_ms"]
    # fattn's ratios are ratio_cudnn / ratio_flash; a variant's carry its name: ratio_v5_cudnn.
    for impl, prefix in [("fattn", "")] + [(name, name + "_") for name in args.variant_libs]:
        for key in ("cudnn", "flash"):
            if not math.isnan(row[f"{key}_ms"]) and not math.isnan(row[f"{impl}_ms"]):
                row[f"ratio_{prefix}{key}"] = row[f"{key}_ms"] / row[f"{impl}_ms"]
    del sets, params, ws
    torch.cuda.empty_cache()
    return row


def fmt(x, spec):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return format(x, spec)


def table(rows, card, args):
    variants = list(args.variant_libs)
    lines = [f"card: {card}; torch {torch.__version__}; layout {args.layout}; median of {args.rounds} rounds x "
             f"{args.reps} (warm-up {args.warmup}), implementations interleaved; "
             f"path {'portable (forced)' if args.portable else 'auto'}"
             + "".join(f"; variant {n} = {p}" for n, p in args.variant_paths.items()),
             "",
             "| shape | B | Sq | Skv | Hq/Hkv | D | causal | dtype | fattn ms | fattn TFLOPS | cuDNN TFLOPS | flash TFLOPS | fattn/cuDNN | fattn/flash | "
             + "".join(f"{n} TFLOPS | {n}/cuDNN | " for n in variants)
             + ("fp8 TFLOPS | fp8 speed-up vs fattn | " if args.fp8 else "") + "err vs flash | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + "---|---|" * len(variants)
             + ("---|---|" if args.fp8 else "") + "---|---|"]
    for r in rows:
        lines.append("| " + " | ".join([
            r["name"], str(r["B"]), str(r["Sq"]), str(r["Skv"]), f"{r['Hq']}/{r['Hkv']}", str(r["D"]),
            str(r["causal"]), r["dtype"], fmt(r.get("fattn_ms"), ".3f"), fmt(r.get("fattn_tflops"), ".0f"),
            fmt(r.get("cudnn_tflops"), ".0f"), fmt(r.get("flash_tflops"), ".0f"),
            fmt(r.get("ratio_cudnn"), ".3f"), fmt(r.get("ratio_flash"), ".3f")]
            + [x for n in variants for x in (fmt(r.get(f"{n}_tflops"), ".0f"), fmt(r.get(f"ratio_{n}_cudnn"), ".3f"))]
            + ([fmt(r.get("fp8_tflops"), ".0f"), fmt(r.get("ratio_fp8_fattn"), ".3f")] if args.fp8 else [])
            + [fmt(r.get("rel_err_vs_flash"), ".1e"), r.get("note", "")]) + " |")
    judged = [r for r in rows if r["dtype"] in ("bf16", "fp16", "f16") and r.get("ratio_flash")]
    if judged:
        ratios = [r["ratio_flash"] for r in judged]
        geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        worst = min(judged, key=lambda r: r["ratio_flash"])
        seed = [r for r in judged if r["name"] == "seed_dit"]
        lines.append("")
        lines.append(f"fattn/flash over {len(judged)} bf16/fp16 shapes: geomean {geo:.3f}, "
                     f"min {worst['ratio_flash']:.3f} ({worst['name']})"
                     + (f", seed {seed[0]['ratio_flash']:.3f}" if seed else ""))
        cud = [r["ratio_cudnn"] for r in judged if r.get("ratio_cudnn")]
        if cud:
            lines.append(f"fattn/cuDNN geomean {math.exp(sum(math.log(x) for x in cud) / len(cud)):.3f}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=os.path.join(HERE, "shapes.tsv"))
    ap.add_argument("--only", nargs="*", help="keep shapes whose name contains one of these words")
    ap.add_argument("--shape", action="append", default=[], help="ad-hoc B,Sq,Skv,Hq,Hkv,D,causal,dtype")
    ap.add_argument("--reps", type=int, default=30, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=0,
                    help="interleaved rounds over the implementations (default: one per implementation)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=LIB",
                    help="another libfattn build to time alongside (e.g. before and after a change)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--layout", choices=("bhsd", "bshd"), default="bhsd")
    ap.add_argument("--portable", action="store_true", help="set FATTN_FORCE_PORTABLE=1")
    ap.add_argument("--fp8", action="store_true", help="also time fattn's FP8 mode (mode 1) on the same tensors")
    ap.add_argument("--tag", default="", help="suffix for the result files")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.reps < 20:
        raise SystemExit(f"--reps ({args.reps}) must be at least 20 (the protocol's median of >= 20)")
    if args.rounds < 0:
        raise SystemExit(f"--rounds ({args.rounds}) must not be negative (0: one round per implementation)")
    args.variant_paths, args.variant_libs = {}, {}
    for text in args.variant:
        name, sep, path = text.partition("=")
        if not sep or not name.isidentifier() or name in ("fattn", "cudnn", "flash"):
            raise SystemExit(f"--variant {text!r}: want NAME=LIB with NAME a new identifier")
        args.variant_paths[name] = path
        args.variant_libs[name] = capi.load_library(path)
    args.rounds = args.rounds or 3 + len(args.variant_libs)
    if args.portable:
        os.environ["FATTN_FORCE_PORTABLE"] = "1"
    shapes = [] if (args.shape and not args.only) else read_shapes(args.shapes)
    if args.only:
        shapes = [s for s in shapes if any(w in s.name for w in args.only)]
    shapes += [parse_adhoc(t) for t in args.shape]
    card = torch.cuda.get_device_name()
    stream = torch.cuda.current_stream().cuda_stream
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    rows = []
    for s in shapes:
        row = bench_shape(s, args, stream)
        rows.append(row)
        print(f"{s.name}: fattn {fmt(row.get('fattn_tflops'), '.0f')} TFLOPS, cuDNN "
              f"{fmt(row.get('cudnn_tflops'), '.0f')}, flash {fmt(row.get('flash_tflops'), '.0f')}, "
              f"fattn/flash {fmt(row.get('ratio_flash'), '.3f')} {row.get('note', '')}", flush=True)
    text = table(rows, card, args)
    print()
    print(text)
    if args.no_save:
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{card.replace(' ', '_')}{('-' + args.tag) if args.tag else ''}"
    outs = [os.path.join(HERE, "results")]
    if os.environ.get("OUT"):
        outs.append(os.environ["OUT"])
    keys = sorted({k for r in rows for k in r})
    for d in outs:
        os.makedirs(d, exist_ok=True)
        name = base if d != os.environ.get("OUT") else f"bench{('-' + args.tag) if args.tag else ''}"
        with open(os.path.join(d, name + ".md"), "w") as fh:
            fh.write(text + "\n")
        with open(os.path.join(d, name + ".csv"), "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
