"""Development check of the Hopper kernel through libhopperdev.so (hopper.cu + shim.c):
correctness against float64 torch on the GPU, then timing against SDPA's cuDNN backend."""
import ctypes
import importlib.util
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("capi", os.path.join(HERE, "../../../../python/fattn/capi.py"))
capi = importlib.util.module_from_spec(spec)
spec.loader.exec_module(capi)

LIBS = []
for path in [a for a in sys.argv[1:] if not a.startswith("--")]:
    lib = ctypes.CDLL(path)
    lib.fattn_hopper_forward.argtypes = [ctypes.POINTER(capi.Params), ctypes.c_void_p]
    lib.fattn_last_error.restype = ctypes.c_char_p
    LIBS.append((os.path.basename(path).replace("libhopper", "").replace(".so", "") or "base", lib))
lib = LIBS[0][1]

DT = {torch.bfloat16: capi.DTYPE_BF16, torch.float16: capi.DTYPE_F16}


def tens(x):
    # x is a [B, S, H, D] view
    return capi.Tensor(x.data_ptr(), x.stride(0), x.stride(1), x.stride(2))


def params(q, k, v, o, causal, lse=None):
    p = capi.Params()
    p.batch, p.seqlen_q, p.heads_q, p.head_dim = q.shape
    p.seqlen_kv, p.heads_kv = k.shape[1], k.shape[2]
    p.dtype = DT[q.dtype]
    p.mode = 0
    p.causal = int(causal)
    p.scale = 0.0
    p.q, p.k, p.v, p.o = tens(q), tens(k), tens(v), tens(o)
    p.lse = lse.data_ptr() if lse is not None else None
    return p


def run(p, lib):
    st = lib.fattn_hopper_forward(ctypes.byref(p), ctypes.c_void_p(torch.cuda.current_stream().cuda_stream))
    if st != 0:
        raise RuntimeError(f"status {st}: {lib.fattn_last_error().decode()}")


def reference(q, k, v, causal):
    B, Sq, H, D = q.shape
    Skv, Hk = k.shape[1], k.shape[2]
    qd, kd, vd = (t.double().transpose(1, 2) for t in (q, k, v))
    kd = kd.repeat_interleave(H // Hk, dim=1)
    vd = vd.repeat_interleave(H // Hk, dim=1)
    s = qd @ kd.transpose(-1, -2) / math.sqrt(D)
    if causal:
        i = torch.arange(Sq, device=q.device)[:, None]
        j = torch.arange(Skv, device=q.device)[None, :]
        s = s.masked_fill(j > i + Skv - Sq, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    pr = torch.softmax(s, dim=-1).nan_to_num(0.0)
    return (pr @ vd).transpose(1, 2), lse


def make(B, Sq, Skv, H, Hk, D, dtype, layout):
    g = lambda S, h: torch.randn(B, S, h, D, device="cuda", dtype=dtype)
    if layout == "bshd":
        return g(Sq, H), g(Skv, Hk), g(Skv, Hk)
    if layout == "bhsd":
        t = lambda S, h: torch.randn(B, h, S, D, device="cuda", dtype=dtype).transpose(1, 2)
        return t(Sq, H), t(Skv, Hk), t(Skv, Hk)
    assert Sq == Skv and H == Hk
    qkv = torch.randn(B, Sq, 3, H, D, device="cuda", dtype=dtype)
    return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]


CASES = [
    # B, Sq, Skv, H, Hk, D, dtype, causal, layout
    (2, 1024, 1024, 4, 4, 128, torch.bfloat16, False, "bshd"),
    (2, 1000, 777, 4, 4, 128, torch.bfloat16, False, "bshd"),
    (1, 1, 1, 2, 2, 128, torch.bfloat16, False, "bshd"),
    (2, 1000, 1000, 4, 4, 128, torch.bfloat16, True, "bshd"),
    (1, 300, 1000, 4, 4, 128, torch.bfloat16, True, "bshd"),
    (1, 1000, 300, 4, 4, 128, torch.bfloat16, True, "bshd"),
    (2, 513, 513, 8, 2, 128, torch.bfloat16, True, "bshd"),
    (2, 513, 700, 8, 1, 128, torch.bfloat16, False, "bshd"),
    (2, 700, 700, 4, 4, 128, torch.float16, False, "bshd"),
    (2, 700, 700, 4, 4, 128, torch.float16, True, "bhsd"),
    (2, 700, 700, 4, 4, 128, torch.bfloat16, False, "packed"),
    (2, 1000, 1111, 4, 4, 64, torch.bfloat16, False, "bshd"),
    (2, 1000, 1000, 4, 2, 64, torch.bfloat16, True, "bhsd"),
    (1, 333, 333, 4, 4, 64, torch.float16, True, "packed"),
    (2, 1000, 1111, 4, 4, 256, torch.bfloat16, False, "bshd"),
    (2, 1000, 1000, 4, 2, 256, torch.float16, True, "bhsd"),
    (1, 77, 2000, 2, 1, 256, torch.bfloat16, True, "bshd"),
    # enough tiles that each persistent CTA walks several, of different lengths
    (2, 2500, 2500, 16, 16, 128, torch.bfloat16, True, "bshd"),
    (1, 4000, 1000, 40, 40, 64, torch.bfloat16, True, "bhsd"),
    (4, 1500, 1500, 16, 16, 256, torch.bfloat16, False, "bshd"),
    (2, 3000, 3000, 32, 8, 128, torch.float16, True, "bshd"),
]


SMALL = [
    (1, 100, 130, 2, 1, 128, torch.bfloat16, True, "bshd"),
    (1, 70, 70, 2, 2, 64, torch.float16, False, "packed"),
    (1, 65, 90, 2, 2, 256, torch.bfloat16, False, "bhsd"),
]


def check(cases, lib):
    seed = int(time.time()) % 100000
    torch.manual_seed(seed)
    print(f"seed {seed}")
    fails = 0
    for B, Sq, Skv, H, Hk, D, dtype, causal, layout in cases:
        q, k, v = make(B, Sq, Skv, H, Hk, D, dtype, layout)
        o = torch.full((B, Sq, H, D), float("nan"), device="cuda", dtype=dtype)
        lse = torch.full((B, H, Sq), float("nan"), device="cuda", dtype=torch.float32)
        name = f"B{B} Sq{Sq} Skv{Skv} H{H}/{Hk} d{D} {str(dtype)[6:]} causal={int(causal)} {layout}"
        try:
            run(params(q, k, v, o, causal, lse), lib)
            torch.cuda.synchronize()
        except RuntimeError as e:
            print(f"FAIL {name}: {e}")
            fails += 1
            continue
        ref, ref_lse = reference(q, k, v, causal)
        finite = bool(torch.isfinite(o).all())
        err = ((o.double() - ref).norm() / ref.norm().clamp_min(1e-30)).item()
        fin = torch.isfinite(ref_lse)
        lse_ok = bool((lse.isinf() == ref_lse.isinf()).all()) and not bool(lse.isnan().any()) and (
            not bool(fin.any()) or (lse.double() - ref_lse)[fin].abs().max().item() < 1e-3)
        bound = 1e-2 if dtype == torch.bfloat16 else 5e-3
        ok = finite and err <= bound and lse_ok
        fails += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: rel_l2 {err:.2e} finite={finite} lse_ok={lse_ok}")
    return fails


def bench_one(fn, iters=10):
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for a, b in ev:
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    return sorted(a.elapsed_time(b) for a, b in ev)[iters // 2]


def bench_interleaved(fns, rounds=5):
    """Median over rounds of each function's median time; the functions take turns within each
    round, so clock and power drift during the run falls on all of them alike."""
    for fn in fns:
        for _ in range(3):
            fn()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            times[i].append(bench_one(fn))
    return [sorted(t)[rounds // 2] for t in times]


# shared/bench/shapes.tsv, the public benchmark set
BENCH = [
    ("seed_dit", 1, 15708, 15708, 32, 32, 128, False, torch.bfloat16),
    ("seed_dit_fp16", 1, 15708, 15708, 32, 32, 128, False, torch.float16),
    ("d64_1k", 16, 1024, 1024, 32, 32, 64, False, torch.bfloat16),
    ("d64_4k", 4, 4096, 4096, 32, 32, 64, False, torch.bfloat16),
    ("d64_16k", 1, 16384, 16384, 32, 32, 64, False, torch.bfloat16),
    ("d128_1k", 16, 1024, 1024, 16, 16, 128, False, torch.bfloat16),
    ("d128_4k", 4, 4096, 4096, 16, 16, 128, False, torch.bfloat16),
    ("d128_16k", 1, 16384, 16384, 16, 16, 128, False, torch.bfloat16),
    ("d128_4k_causal", 4, 4096, 4096, 16, 16, 128, True, torch.bfloat16),
    ("d128_16k_causal", 1, 16384, 16384, 16, 16, 128, True, torch.bfloat16),
    ("d256_1k", 16, 1024, 1024, 8, 8, 256, False, torch.bfloat16),
    ("d256_4k", 4, 4096, 4096, 8, 8, 256, False, torch.bfloat16),
    ("d256_16k", 1, 16384, 16384, 8, 8, 256, False, torch.bfloat16),
    ("gqa_8k_causal", 1, 8192, 8192, 32, 8, 128, True, torch.bfloat16),
]


def bench():
    names = " ".join(f"{n:>9s}" for n, _ in LIBS)
    print(f"{'shape':18s} {names} {'cudnn':>7s} ratios  (TFLOPS, {torch.cuda.get_device_name()})")
    for name, B, Sq, Skv, H, Hk, D, causal, dtype in BENCH:
        q, k, v = make(B, Sq, Skv, H, Hk, D, dtype, "bshd")
        o = torch.empty_like(q)
        p = params(q, k, v, o, causal)
        qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
        # cuDNN's SDPA takes equal head counts; GQA is expanded for it
        kt, vt = (t.repeat_interleave(H // Hk, dim=1) for t in (kt, vt))
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            ref = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
            fns = [lambda lib=lib: run(p, lib) for _, lib in LIBS]
            fns.append(lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal))
            *t_f, t_c = bench_interleaved(fns)
        run(p, LIBS[0][1])
        err = ((o.float() - ref.transpose(1, 2).float()).norm() / ref.float().norm()).item()
        flops = 4 * B * H * Sq * Skv * D / (2 if causal else 1)
        tf, tc = [flops / t / 1e9 for t in t_f], flops / t_c / 1e9
        cols = " ".join(f"{x:9.1f}" for x in tf)
        ratios = " ".join(f"{x / tc:.3f}" for x in tf)
        print(f"{name:18s} {cols} {tc:7.1f} {ratios}  err-vs-cudnn {err:.1e}")


if __name__ == "__main__":
    fails = 0
    for name, each in LIBS:
        print(f"== {name}")
        fails += check(SMALL if "--small" in sys.argv else CASES, each)
    if "--bench" in sys.argv:
        bench()
    sys.exit(1 if fails else 0)
