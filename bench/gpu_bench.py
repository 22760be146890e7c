#!/usr/bin/env python3
"""GPU benchmark: fattn against torch SDPA (cuDNN backend and flash backend) and, where it imports,
FlashAttention-4 (`flash_attn.cute`, scripts/fa4/ carries it to the GPU machine) on the same inputs.

Protocol: CUDA events around each call, warm-up, median of >= 20 runs, inputs
rotated over enough sets that the L2 cache cannot hold them, all implementations on the
same tensors in one process. TFLOPS = 4*B*Hq*Sq*Skv*D / time (halved for causal).

Layout: tensors are allocated BHSD (SDPA's own layout) and fattn gets the same memory through
BHSD strides, so neither side pays for a copy; --layout bshd allocates BSHD instead (the seed's
layout) and hands SDPA transposed views. FA4's API is BSHD, so when it imports BSHD is the
default; under --layout bhsd it gets transposed views, which its wrapper takes without a copy (any
view with the last dim contiguous and the other strides multiples of 16 bytes).

  gpu_bench.py                      # every shape of bench/shapes.tsv
  gpu_bench.py --only seed d128     # shapes whose name contains a word
  gpu_bench.py --shape 2,4096,4096,16,16,128,1,bf16   # ad hoc: B,Sq,Skv,Hq,Hkv,D,causal,dtype
  gpu_bench.py --variant v5=old/libfattn.so            # another libfattn build, timed alongside
  gpu_bench.py --shapes bench/headdims.tsv --fa4-table bench/results/20261202-H200-fa4-headdims.md
  gpu_bench.py --shapes bench/short.tsv --graph    # B64 x S128: CUDA-graph replay (GPU time < enqueue)

Timings drift by several percent over a run (clocks, temperature; the implementation timed later
in a sequence was seen up to 8% slower), so every implementation of a shape is timed in --rounds
interleaved rounds and the median is taken over all rounds. The card runs at its power limit on
the long shapes and its clock follows the load of the last few tens of milliseconds: an
implementation timed right after a slower, cooler one (SDPA's flash backend) started at a higher
clock, and with a fixed rotation the same implementation always followed it (2026-12-03, H200:
one build of fattn measured 5-12% above identical copies of itself timed as variants). So each
round takes the implementations in its own shuffled order (seeded by the round), and each
implementation's warm-up runs for at least --warmup-ms, long enough for the clock to settle under
its own load.
"""
import argparse
import csv
import ctypes
import datetime
import importlib.metadata
import math
import os
import random
import statistics
import subprocess
import time

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


def _load_fa4():
    """FlashAttention-4's forward and its version, or None and why it is absent."""
    try:
        from flash_attn.cute import flash_attn_func
    except Exception as err:  # not only ImportError: the CuTe DSL raises its own when its libraries fail to load
        return None, f"{type(err).__name__}: {err}"
    try:
        version = importlib.metadata.version("flash-attn-4")
    except importlib.metadata.PackageNotFoundError:
        version = "(version unknown)"
    return flash_attn_func, f"flash-attn-4 {version}"

DTYPES = {"bf16": (torch.bfloat16, capi.DTYPE_BF16), "fp16": (torch.float16, capi.DTYPE_F16),
          "f16": (torch.float16, capi.DTYPE_F16), "fp32": (torch.float32, capi.DTYPE_F32),
          "f32": (torch.float32, capi.DTYPE_F32)}
ROTATE_BYTES = 256 << 20  # several times the 50 MB L2 of an H100
MAX_SET_MEMORY = 24 << 30
# Host enqueue time per call, as a share of the device time, from which the queue may run dry
# between calls and the events time host overhead too.
HOST_BOUND = 0.8


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


def select_shapes(args):
    """The shapes of --shapes (kept by --only), then the ad-hoc --shape ones; --shape alone times
    only those."""
    shapes = [] if (args.shape and not args.only) else read_shapes(args.shapes)
    if args.only:
        shapes = [s for s in shapes if any(w in s.name for w in args.only)]
    return shapes + [parse_adhoc(t) for t in args.shape]


def load_variants(texts, reserved):
    """--variant NAME=LIB arguments as (paths, libraries) by name; NAME must be a new identifier,
    not in `reserved` and not ending in _fp8 (the suffix of a variant's FP8 mode)."""
    paths, libs = {}, {}
    for text in texts:
        name, sep, path = text.partition("=")
        if not sep or not name.isidentifier() or name in reserved or name in paths or name.endswith("_fp8"):
            raise SystemExit(f"--variant {text!r}: want NAME=LIB with NAME a new identifier not ending in _fp8")
        paths[name] = path
        libs[name] = capi.load_library(path)
    return paths, libs


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


def warm_up(fn, nsets, warmup, warmup_ms):
    """At least `warmup` calls and `warmup_ms` of wall time, in batches of `warmup` between
    synchronisations, so that the clock settles under the implementation's own load."""
    t0, i = time.perf_counter(), 0
    while i < warmup or (time.perf_counter() - t0) * 1e3 < warmup_ms:
        for _ in range(warmup):
            fn(i % nsets)
            i += 1
        torch.cuda.synchronize()


def time_runs(fn, nsets, warmup, reps, warmup_ms, graph=False):
    """Milliseconds of `reps` calls, each between its own pair of events, queued back to back so
    host overhead overlaps device work; call i uses input set i % nsets. Also the host's
    milliseconds per call to enqueue them: where that reaches the device time, the queue runs dry
    and the events time the host. The warm-up is at least `warmup` calls and `warmup_ms` of
    wall time. With `graph`, the calls are replayed from a CUDA graph instead (time_graph)."""
    warm_up(fn, nsets, warmup, warmup_ms)
    if graph:
        return time_graph(fn, nsets, reps)
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(reps)]
    t0 = time.perf_counter()
    for i, (a, b) in enumerate(events):
        a.record()
        fn(i % nsets)
        b.record()
    host_ms = (time.perf_counter() - t0) * 1e3 / reps
    torch.cuda.synchronize()
    return [a.elapsed_time(b) for a, b in events], host_ms


GRAPH_REPLAYS = 5


def time_graph(fn, nsets, reps):
    """The `reps` calls captured into one CUDA graph, which is replayed GRAPH_REPLAYS times between
    events: per-call milliseconds of each replay (its time / reps), and the host's milliseconds per
    call of one replay's launch. Short shapes take a few microseconds on the GPU, less than one
    enqueue from Python, so only replay times the kernels there (issue #12 measured with replay)."""
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(reps):
            fn(i % nsets)
    g.replay()  # the first replay uploads the graph
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(GRAPH_REPLAYS)]
    t0 = time.perf_counter()
    for a, b in events:
        a.record()
        g.replay()
        b.record()
    host_ms = (time.perf_counter() - t0) * 1e3 / (GRAPH_REPLAYS * reps)
    torch.cuda.synchronize()
    times = [a.elapsed_time(b) / reps for a, b in events]
    del g
    return times, host_ms


def sdpa_fn(sets, s, backend):
    gqa = s.hq != s.hkv

    def run(i):
        q, k, v, _ = sets[i]
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=bool(s.causal),
                                                  enable_gqa=gqa)
    return run


def fa4_fn(sets, s, flash_attn_func):
    """FA4 on BSHD views of the same tensors (contiguous under --layout bshd)."""
    bshd = [tuple(t.transpose(1, 2) for t in st[:3]) for st in sets]
    causal = bool(s.causal)

    def run(i):
        return flash_attn_func(*bshd[i], causal=causal)[0]
    return run


def add_note(row, text):
    row["note"] = (row.get("note", "") + " " + text).strip()


def fattn_impls(s, sets, args, row):
    """libfattn's calls on the sets (fattn, each --variant, fp8 with --fp8) by name; none where
    libfattn refuses the shape, which becomes a note: the other implementations are still timed."""
    params = [fattn_params(s, *st) for st in sets]
    # Before the workspace query, which raises on parameters libfattn rejects (heads_q not a
    # multiple of heads_kv).
    status, msg = capi.cuda_supported(params[0])
    if status != capi.OK:
        add_note(row, f"fattn: {capi.status_name(status)}: {msg}")
        return {}

    def fattn_fn(lib, params):
        # Each library sizes its own workspace: a variant build may need one where main needs none.
        ws_bytes = capi.cuda_workspace_size(params[0], lib)
        ws = torch.empty(ws_bytes, dtype=torch.uint8, device="cuda") if ws_bytes else None
        ws_ptr = ws.data_ptr() if ws is not None else None
        pptrs = [ctypes.byref(p) for p in params]  # byref holds its parameter block alive

        def run(i, ws=ws):  # ws bound here: the workspace lives as long as the call
            # the stream current at the call: a graph's capture runs on a stream of its own
            st = lib.fattn_cuda_forward(pptrs[i], ws_ptr, ws_bytes, torch.cuda.current_stream().cuda_stream)
            if st != capi.OK:
                raise capi.FattnError(st, capi.status_name(st), lib.fattn_last_error().decode())
        return run

    impls = {"fattn": fattn_fn(capi.load_library(), params)}
    for name, lib in args.variant_libs.items():
        impls[name] = fattn_fn(lib, params)
    if args.fp8:
        # FP8 mode on the same tensors, quantisation pass included in its time.
        fp8_params = [fattn_params(s, *st, mode=capi.MODE_FP8) for st in sets]
        status, msg = capi.cuda_supported(fp8_params[0])
        if status == capi.OK:
            impls["fp8"] = fattn_fn(capi.load_library(), fp8_params)
            for name, lib in args.variant_libs.items():  # a variant's FP8 mode: NAME_fp8
                impls[f"{name}_fp8"] = fattn_fn(lib, fp8_params)
        else:
            add_note(row, f"fp8: {capi.status_name(status)}: {msg}")
    return impls


def bench_shape(s, args):
    sets = make_sets(s, args.layout, "cuda")
    row = {"name": s.name, "B": s.b, "Sq": s.sq, "Skv": s.skv, "Hq": s.hq, "Hkv": s.hkv,
           "D": s.d, "causal": s.causal, "dtype": s.dtype, "sets": len(sets)}
    results = fattn_impls(s, sets, args, row)
    results["cudnn"] = sdpa_fn(sets, s, SDPBackend.CUDNN_ATTENTION)
    results["flash"] = sdpa_fn(sets, s, SDPBackend.FLASH_ATTENTION)
    if args.fa4:
        fa4_run = fa4_fn(sets, s, args.fa4)
        try:
            # The first call of a configuration JIT-compiles it (1-3 s): here, never inside a timing.
            fa4_run(0)
            torch.cuda.synchronize()
            results["fa4"] = fa4_run
        except Exception as err:  # FA4 refuses what it does not serve by assertion (fp32, head dims)
            add_note(row, f"fa4: {type(err).__name__}: {str(err)[:120]}")
    times = {key: [] for key in results}
    hosts = {key: [] for key in results}
    keys = list(results)
    for r in range(args.rounds):
        # A shuffled order per round: no implementation always follows the same one (module doc).
        order = keys[:]
        random.Random(r).shuffle(order)
        for key in order:
            if times[key] is None:
                continue
            try:
                t, host_ms = time_runs(results[key], len(sets), args.warmup, args.reps, args.warmup_ms, args.graph)
                times[key] += t
                hosts[key].append(host_ms)
            except Exception as err:  # a backend that refuses the shape is reported, not fatal
                times[key] = None
                add_note(row, f"{key}: {type(err).__name__}: {str(err)[:80]}")
    for key, t in times.items():
        med = statistics.median(t) if t else float("nan")
        row[f"{key}_ms"] = med
        row[f"{key}_tflops"] = s.flops() / (med * 1e-3) / 1e12
        if t:
            row[f"{key}_spread"] = (max(t) - min(t)) / med
            host = row[f"{key}_host_ms"] = statistics.median(hosts[key])
            if host >= HOST_BOUND * med:
                add_note(row, f"{key}: host-bound? enqueue {host:.3f} ms/call vs {med:.3f} ms on the GPU")
    timed = {key for key in results if not math.isnan(row[f"{key}_ms"])}
    # Sanity on set 0: fattn and FA4 against the flash backend (SDPA's causal is top-left
    # aligned, theirs bottom-right: comparable only when Sq == Skv), and FA4 against fattn on
    # every shape.
    outs = {}
    if "fattn" in timed:
        results["fattn"](0)
        outs["fattn"] = sets[0][3]
    if "flash" in timed and (not s.causal or s.sq == s.skv):
        outs["flash"] = results["flash"](0)
    if "fa4" in timed:
        outs["fa4"] = results["fa4"](0).transpose(1, 2)
    torch.cuda.synchronize()
    outs = {key: t.float() for key, t in outs.items()}
    if "fattn" in outs and "flash" in outs:
        row["rel_err_vs_flash"] = ((outs["fattn"] - outs["flash"]).norm() / outs["flash"].norm()).item()
    for ref in ("fattn", "flash"):
        if "fa4" in outs and ref in outs:
            row[f"fa4_maxdiff_{ref}"] = (outs["fa4"] - outs[ref]).abs().max().item()
    if "fp8_ms" in row and not math.isnan(row["fp8_ms"]):
        row["ratio_fp8_fattn"] = row["fattn_ms"] / row["fp8_ms"]
    # fattn's ratios are ratio_cudnn / ratio_flash / ratio_fa4; a variant's carry its name:
    # ratio_v5_cudnn.
    for impl, prefix in [("fattn", "")] + [(name, name + "_") for name in args.variant_libs]:
        for key in ("cudnn", "flash", "fa4"):
            if key in timed and impl in timed:
                row[f"ratio_{prefix}{key}"] = row[f"{key}_ms"] / row[f"{impl}_ms"]
    del sets, results
    torch.cuda.empty_cache()
    return row


def fmt(x, spec):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return format(x, spec)


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def method_line(args):
    """How the times were taken, for the tables' headers."""
    calls = (f"{args.reps} calls captured in a CUDA graph, replayed {GRAPH_REPLAYS} times" if args.graph
             else f"{args.reps} calls between CUDA events")
    return (f"median of {args.rounds} rounds in a shuffled order, each {calls} (warm-up {args.warmup} calls, "
            f">= {args.warmup_ms:g} ms)")


def fa4_line(args):
    return f"FA4: {args.fa4_info}" if args.fa4 else f"FA4 not timed: {args.fa4_info}"


def table(rows, card, args):
    variants = list(args.variant_libs)
    fa4 = bool(args.fa4)
    lines = [f"card: {card}; torch {torch.__version__}; layout {args.layout}; {method_line(args)}; "
             f"path {'portable (forced)' if args.portable else 'auto'}; {fa4_line(args)}"
             + "".join(f"; variant {n} = {p}" for n, p in args.variant_paths.items()),
             "",
             "| shape | B | Sq | Skv | Hq/Hkv | D | causal | dtype | fattn ms | fattn TFLOPS | cuDNN TFLOPS | flash TFLOPS | fattn/cuDNN | fattn/flash | "
             + ("FA4 TFLOPS | fattn/FA4 | " if fa4 else "")
             + "".join(f"{n} TFLOPS | {n}/cuDNN | " for n in variants)
             + ("fp8 TFLOPS | fp8 speed-up vs fattn | " if args.fp8 else "")
             + ("".join(f"{n} fp8 TFLOPS | " for n in variants) if args.fp8 else "") + "err vs flash | "
             + ("FA4 max abs diff vs fattn | " if fa4 else "") + "note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if fa4 else "")
             + "---|---|" * len(variants) + ("---|---|" + "---|" * len(variants) if args.fp8 else "") + "---|"
             + ("---|" if fa4 else "") + "---|"]
    for r in rows:
        lines.append("| " + " | ".join([
            r["name"], str(r["B"]), str(r["Sq"]), str(r["Skv"]), f"{r['Hq']}/{r['Hkv']}", str(r["D"]),
            str(r["causal"]), r["dtype"], fmt(r.get("fattn_ms"), ".3f"), fmt(r.get("fattn_tflops"), ".0f"),
            fmt(r.get("cudnn_tflops"), ".0f"), fmt(r.get("flash_tflops"), ".0f"),
            fmt(r.get("ratio_cudnn"), ".3f"), fmt(r.get("ratio_flash"), ".3f")]
            + ([fmt(r.get("fa4_tflops"), ".0f"), fmt(r.get("ratio_fa4"), ".3f")] if fa4 else [])
            + [x for n in variants for x in (fmt(r.get(f"{n}_tflops"), ".0f"), fmt(r.get(f"ratio_{n}_cudnn"), ".3f"))]
            + ([fmt(r.get("fp8_tflops"), ".0f"), fmt(r.get("ratio_fp8_fattn"), ".3f")] if args.fp8 else [])
            + ([fmt(r.get(f"{n}_fp8_tflops"), ".0f") for n in variants] if args.fp8 else [])
            + [fmt(r.get("rel_err_vs_flash"), ".1e")]
            + ([fmt(r.get("fa4_maxdiff_fattn"), ".1e")] if fa4 else []) + [r.get("note", "")]) + " |")
    judged = [r for r in rows if r["dtype"] in ("bf16", "fp16", "f16") and r.get("ratio_flash")]
    if judged:
        worst = min(judged, key=lambda r: r["ratio_flash"])
        seed = [r for r in judged if r["name"] == "seed_dit"]
        lines.append("")
        lines.append(f"fattn/flash over {len(judged)} bf16/fp16 shapes: geomean "
                     f"{geomean([r['ratio_flash'] for r in judged]):.3f}, "
                     f"min {worst['ratio_flash']:.3f} ({worst['name']})"
                     + (f", seed {seed[0]['ratio_flash']:.3f}" if seed else ""))
        for key, label in (("ratio_cudnn", "fattn/cuDNN"), ("ratio_fa4", "fattn/FA4")):
            xs = [r[key] for r in judged if r.get(key)]
            if xs:
                lines.append(f"{label} geomean {geomean(xs):.3f} over {len(xs)} shapes")
    return "\n".join(lines)


def git_commit():
    """$FATTN_COMMIT where set (the GPU machine's copy of the working tree carries a .git of the
    session's starting commit, not of what it runs), else the checkout's commit, '+dirty' with
    uncommitted changes to tracked files."""
    given = os.environ.get("FATTN_COMMIT")
    if given:
        return f"{given} (from FATTN_COMMIT)"
    try:
        def git(*words):
            return subprocess.run(["git", "-C", REPO, *words], capture_output=True, text=True,
                                  check=True).stdout.strip()
        return git("rev-parse", "--short=12", "HEAD") + \
            ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git checkout here; set FATTN_COMMIT)"


FA4_COLUMNS = (("FA4 TFLOPS", "fa4_tflops", ".0f"), ("cuDNN TFLOPS", "cudnn_tflops", ".0f"),
               ("fattn TFLOPS", "fattn_tflops", ".0f"), ("fattn/FA4", "ratio_fa4", ".3f"),
               ("fattn/cuDNN", "ratio_cudnn", ".3f"))


def fa4_table(rows, card, args, shapes_label):
    """The acceptance table against FA4 (issue #12): a row per shape, its name first, then a
    geomean row; each geomean is over the shapes that have the value, counted where some lack it."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    lines = [f"# fattn against FlashAttention-4 and cuDNN ({shapes_label})", "",
             f"card: {card}; date: {date} (UTC); commit: {git_commit()}", "",
             f"{fa4_line(args)}; torch {torch.__version__}; cuDNN {torch.backends.cudnn.version()}; "
             f"layout {args.layout}; path {'portable (forced)' if args.portable else 'auto'}; {method_line(args)}, "
             "the same inputs for every implementation; TFLOPS = 4*B*Hq*Sq*Skv*D / time, halved for causal; "
             "fattn/X = X's time / fattn's.", "",
             "| shape | " + " | ".join(c[0] for c in FA4_COLUMNS) + " |",
             "|---|" + "---|" * len(FA4_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join([r["name"]] + [fmt(r.get(key), spec) for _, key, spec in FA4_COLUMNS]) + " |")
    cells = []
    for _, key, spec in FA4_COLUMNS:
        xs = [r[key] for r in rows if r.get(key) and not math.isnan(r[key])]
        cells.append((fmt(geomean(xs), spec) + (f" ({len(xs)} of {len(rows)})" if len(xs) < len(rows) else ""))
                     if xs else "n/a")
    lines.append("| geomean | " + " | ".join(cells) + " |")
    checked = [r for r in rows if "fa4_maxdiff_fattn" in r]
    lines.append("")
    if checked:
        worst = max(checked, key=lambda r: r["fa4_maxdiff_fattn"])
        flash = [r["fa4_maxdiff_flash"] for r in checked if "fa4_maxdiff_flash" in r]
        lines.append(f"FA4 against fattn on the same inputs: max abs diff at most {worst['fa4_maxdiff_fattn']:.1e} "
                     f"({worst['name']}) over {len(checked)} of {len(rows)} shapes"
                     + (f"; against SDPA flash at most {max(flash):.1e} over {len(flash)}." if flash else "."))
    else:
        lines.append("FA4 against fattn: no shape had both outputs.")
    lines += [f"- {r['name']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=os.path.join(HERE, "shapes.tsv"),
                    help="shapes file (default bench/shapes.tsv; bench/headdims.tsv: the other head dims)")
    ap.add_argument("--only", nargs="*", help="keep shapes whose name contains one of these words")
    ap.add_argument("--shape", action="append", default=[], help="ad-hoc B,Sq,Skv,Hq,Hkv,D,causal,dtype")
    ap.add_argument("--reps", type=int, default=30, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=0,
                    help="rounds over the implementations, each in its own order (default: one per implementation)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=LIB",
                    help="another libfattn build to time alongside (e.g. before and after a change)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--graph", action="store_true",
                    help="time replays of a CUDA graph of the --reps calls (for shapes shorter than an enqueue)")
    ap.add_argument("--warmup-ms", type=float, default=100.0,
                    help="least wall time of each implementation's warm-up per round (the clock settles)")
    ap.add_argument("--layout", choices=("bhsd", "bshd"),
                    help="tensor layout (default: bshd when FA4 is timed, else bhsd)")
    ap.add_argument("--no-fa4", action="store_true", help="leave FlashAttention-4 out even where it imports")
    ap.add_argument("--fa4-table", metavar="PATH.md",
                    help="also write the acceptance table against FA4 and cuDNN (needs FA4; a name under "
                         "bench/results/ must contain 'fa4')")
    ap.add_argument("--portable", action="store_true", help="set FATTN_FORCE_PORTABLE=1")
    ap.add_argument("--fp8", action="store_true", help="also time fattn's FP8 mode (mode 1) on the same tensors")
    ap.add_argument("--tag", default="", help="suffix for the result files")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.reps < 20:
        raise SystemExit(f"--reps ({args.reps}) must be at least 20 (the protocol's median of >= 20)")
    if not args.warmup_ms >= 0:
        raise SystemExit(f"--warmup-ms ({args.warmup_ms}) must be a number of milliseconds, 0 or more")
    if args.rounds < 0:
        raise SystemExit(f"--rounds ({args.rounds}) must not be negative (0: one round per implementation)")
    args.variant_paths, args.variant_libs = load_variants(args.variant, ("fattn", "cudnn", "flash", "fa4", "fp8"))
    args.fa4, args.fa4_info = (None, "--no-fa4") if args.no_fa4 else _load_fa4()
    if args.layout is None:
        args.layout = "bshd" if args.fa4 else "bhsd"
    if args.fa4_table:
        table_path = os.path.abspath(args.fa4_table)
        if not args.fa4:
            raise SystemExit(f"--fa4-table {args.fa4_table}: FlashAttention-4 is not timed ({args.fa4_info})")
        if not os.path.isdir(os.path.dirname(table_path)):
            raise SystemExit(f"--fa4-table {args.fa4_table}: folder {os.path.dirname(table_path)} does not exist")
        if os.path.dirname(table_path) == os.path.join(HERE, "results") and "fa4" not in os.path.basename(table_path):
            raise SystemExit(f"--fa4-table {args.fa4_table}: a table in bench/results/ must have 'fa4' in its name")
    print(fa4_line(args), flush=True)
    # One round per implementation, so each is timed once in every position of the rotation (with
    # fewer, identical code was seen 13% apart: perf-notes, v7b); --fp8 times fp8 and each
    # variant's FP8 mode too.
    args.rounds = args.rounds or (3 + len(args.variant_libs) + bool(args.fa4)
                                  + (1 + len(args.variant_libs) if args.fp8 else 0))
    if args.portable:
        os.environ["FATTN_FORCE_PORTABLE"] = "1"
    shapes = select_shapes(args)
    shapes_label = " + ".join(
        ([os.path.relpath(args.shapes, REPO) + (f" --only {' '.join(args.only)}" if args.only else "")]
         if args.only or not args.shape else []) + (["ad-hoc --shape"] if args.shape else []))
    card = torch.cuda.get_device_name()
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    rows = []
    for s in shapes:
        row = bench_shape(s, args)
        rows.append(row)
        print(f"{s.name}: fattn {fmt(row.get('fattn_tflops'), '.0f')} TFLOPS, cuDNN "
              f"{fmt(row.get('cudnn_tflops'), '.0f')}, flash {fmt(row.get('flash_tflops'), '.0f')}, "
              f"fattn/flash {fmt(row.get('ratio_flash'), '.3f')}"
              + (f", FA4 {fmt(row.get('fa4_tflops'), '.0f')}, fattn/FA4 {fmt(row.get('ratio_fa4'), '.3f')}"
                 if args.fa4 else "") + f" {row.get('note', '')}", flush=True)
    text = table(rows, card, args)
    print()
    print(text)
    if args.fa4_table:
        with open(table_path, "w") as fh:
            fh.write(fa4_table(rows, card, args, shapes_label) + "\n")
        print(f"\nacceptance table: {args.fa4_table}")
    if args.no_save:
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # Result files of runs that time FA4 carry it in their names (issue #12's convention).
    base = f"{stamp}-{card.replace(' ', '_')}{'-fa4' if args.fa4 else ''}{('-' + args.tag) if args.tag else ''}"
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
