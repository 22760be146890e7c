#!/usr/bin/env python3
"""One call per implementation at one shape, for a profiler: ncu then sees each kernel once (FP8's
quantisation pass and fp32's tf32 staging apart from the attention kernel), e.g.
    ncu --metrics gpu__time_duration.sum python3 bench/once.py 1,15708,32,128 --impl fattn fattn-fp8
    ncu --set full -k regex:fwd python3 bench/once.py 1,16384,16,128 --causal --impl fattn fa4
Implementations: fattn (mode 0), fattn-fp8 (mode 1, bf16/fp16 I/O only), fa4 (where
`flash_attn.cute` imports; scripts/fa4/ carries it). Each is called twice (FA4's first call per
configuration JIT-compiles) so that a profiler can skip the first launch of each with
`--launch-skip`/`-s`; the note on stdout says which launches are whose."""
import argparse
import importlib.util
import os

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("fattn_capi", os.path.join(REPO, "python", "fattn", "capi.py"))
capi = importlib.util.module_from_spec(spec)
spec.loader.exec_module(capi)

DTYPES = {"bf16": (torch.bfloat16, capi.DTYPE_BF16), "fp16": (torch.float16, capi.DTYPE_F16),
          "fp32": (torch.float32, capi.DTYPE_F32)}

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("shape", nargs="?", default="1,15708,32,128", help="B,S,H,D (BSHD, Sq = Skv, Hq = Hkv)")
ap.add_argument("dtype", nargs="?", default="bf16", choices=sorted(DTYPES))
ap.add_argument("--causal", action="store_true")
ap.add_argument("--impl", nargs="+", default=["fattn", "fattn-fp8"], choices=["fattn", "fattn-fp8", "fa4"])
args = ap.parse_args()

b, s, h, d = (int(x) for x in args.shape.split(","))
tdtype, cdtype = DTYPES[args.dtype]
q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=tdtype) for _ in range(3))
o = torch.empty_like(q)


def view(t):
    st = t.stride()
    return capi.tensor(t.data_ptr(), st[0], st[1], st[2])


def fattn_call(mode):
    p = capi.make_params(batch=b, seqlen_q=s, seqlen_kv=s, heads_q=h, heads_kv=h, head_dim=d, dtype=cdtype,
                         q=view(q), k=view(k), v=view(v), o=view(o), mode=mode, causal=int(args.causal))
    n = capi.cuda_workspace_size(p)
    ws = torch.empty(max(n, 1), dtype=torch.uint8, device="cuda")
    return lambda: capi.cuda_forward(p, ws.data_ptr(), n)


def fa4_call():
    from flash_attn.cute import flash_attn_func
    return lambda: flash_attn_func(q, k, v, causal=args.causal)


calls = {"fattn": lambda: fattn_call(capi.MODE_NATIVE), "fattn-fp8": lambda: fattn_call(capi.MODE_FP8),
         "fa4": fa4_call}
for name in args.impl:
    fn = calls[name]()
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    print(name, "ok (called twice)", flush=True)
