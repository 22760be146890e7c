#!/usr/bin/env python3
"""Float64 simulation of e4m3 attention variants (bare cast, per-head / per-block power-of-two
scales, Hadamard rotation, P scale, row sums from rounded or unrounded P) on FA3's outlier test
and N(0, 1) inputs: how src/core/fp8.h's scheme was chosen. Needs numpy and ml_dtypes;
`python3 bench/fp8_sim.py SEED`."""
import numpy as np, ml_dtypes, sys
F8 = ml_dtypes.float8_e4m3fn
def q8(x): return x.astype(np.float32).astype(F8).astype(np.float64)
def hadamard(n):
    H = np.array([[1.0]])
    while H.shape[0] < n: H = np.block([[H, H], [H, -H]])
    return H
def pow2_scale(amax):  # 2^k with amax/2^k <= 448
    amax = np.maximum(amax, 1e-30)
    return 2.0 ** np.ceil(np.log2(amax / 448.0))
def attn(q, k, v):  # float64 reference, q [S,D]
    s = q @ k.T / np.sqrt(q.shape[1]); s -= s.max(1, keepdims=True); p = np.exp(s)
    return (p @ v) / p.sum(1, keepdims=True)
def fp8_attn(q, k, v, gran, had, pscale, lq, had_v=False, block=64):
    S, D = q.shape
    signs = np.where(np.random.default_rng(123).random(D) < 0.5, -1.0, 1.0)
    if had:
        H = hadamard(D) * signs[:, None]  # x -> (x*signs) @ H (unnormalised)
        q = q @ H; k = k @ H; norm = D
    else: norm = 1.0
    if had_v:
        Hv = hadamard(D) * signs[:, None]; v = v @ Hv
    def quant(x):
        if gran == 'bare': return q8(x), np.ones((x.shape[0], 1))
        if gran == 'head': sc = np.full((x.shape[0], 1), pow2_scale(np.abs(x).max()))
        else:
            sc = np.repeat(pow2_scale(np.abs(x).reshape(-1, block, D).max((1, 2))), block)[:, None]
        return q8(x / sc), sc
    q8_, sq = quant(q); k8, sk = quant(k)
    if gran == 'block':  # V per channel over the sequence
        sv = pow2_scale(np.abs(v).max(0))[None, :]; v8 = q8(v / sv)
    else:
        v8, svr = quant(v); sv = svr[0, 0]
    s = (q8_ @ k8.T) * sq * sk.T / norm / np.sqrt(D)
    s -= s.max(1, keepdims=True); p = np.exp(s)
    pq = q8(p * pscale) / pscale if pscale else q8(p)
    l = pq.sum(1, keepdims=True) if lq else p.sum(1, keepdims=True)
    o = (pq @ v8) * sv / l
    if had_v: o = o @ Hv.T / D
    return o
rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
S, D, H = 4096, 128, 2
def gen(outlier):
    x = rng.standard_normal((H, S, D))
    if outlier:
        m = rng.random((H, S, D)) < 0.001; x[m] = rng.standard_normal(m.sum()) * 10
    return x
for name, outl in [('outlier', True), ('normal', False)]:
    q, k, v = gen(outl), gen(outl), gen(outl)
    ref = [attn(q[h], k[h], v[h]) for h in range(H)]
    for cfg in [dict(gran='bare', had=False, pscale=0, lq=False), dict(gran='head', had=False, pscale=256, lq=False),
                dict(gran='block', had=False, pscale=256, lq=False),
                dict(gran='head', had=True, pscale=256, lq=False), dict(gran='block', had=True, pscale=256, lq=False),
                dict(gran='head', had=True, pscale=256, lq=True), dict(gran='head', had=True, pscale=256, lq=False, had_v=True),
                dict(gran='head', had=True, pscale=448, lq=False)]:
        o = [fp8_attn(q[h], k[h], v[h], **cfg) for h in range(H)]
        err = np.concatenate([(o[h] - ref[h]).ravel() for h in range(H)])
        r = np.concatenate([ref[h].ravel() for h in range(H)])
        print(name, cfg, 'rmse %.3e rel %.3e' % (np.sqrt((err**2).mean()), np.linalg.norm(err) / np.linalg.norm(r)), flush=True)
