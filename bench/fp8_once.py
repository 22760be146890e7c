#!/usr/bin/env python3
"""One fattn call (mode 0 and mode 1) at a given shape, for a profiler to attribute the time to the
pre-pass (FP8's quantisation, fp32's tf32 staging) and the attention kernel:
    ncu --metrics gpu__time_duration.sum python3 bench/fp8_once.py B,S,H,D [bf16|fp32]
fp32 runs mode 0 only (FP8 mode takes bf16/fp16 I/O)."""
import importlib.util
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("fattn_capi", os.path.join(REPO, "python", "fattn", "capi.py"))
capi = importlib.util.module_from_spec(spec)
spec.loader.exec_module(capi)

b, s, h, d = (int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "1,15708,32,128").split(","))
fp32 = len(sys.argv) > 2 and sys.argv[2] == "fp32"
q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.float32 if fp32 else torch.bfloat16) for _ in range(3))
o = torch.empty_like(q)


def view(t):
    st = t.stride()
    return capi.tensor(t.data_ptr(), st[0], st[1], st[2])


for mode in (capi.MODE_NATIVE,) if fp32 else (capi.MODE_NATIVE, capi.MODE_FP8):
    p = capi.make_params(batch=b, seqlen_q=s, seqlen_kv=s, heads_q=h, heads_kv=h, head_dim=d,
                         dtype=capi.DTYPE_F32 if fp32 else capi.DTYPE_BF16,
                         q=view(q), k=view(k), v=view(v), o=view(o), mode=mode)
    n = capi.cuda_workspace_size(p)
    ws = torch.empty(max(n, 1), dtype=torch.uint8, device="cuda")
    capi.cuda_forward(p, ws.data_ptr(), n)
    torch.cuda.synchronize()
    print("mode", mode, "ok")
