"""Shared fixtures: fresh seeds, NaN-poisoned outputs, and the float64 reference."""
import math
import os
import random

import pytest
import torch

import fattn

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

# Relative L2 bounds of docs/design.md (Correctness bounds).
TOLERANCE = {torch.float32: 1e-3, torch.float16: 5e-3, torch.bfloat16: 1e-2}


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


@pytest.fixture
def gen(request):
    """A generator seeded afresh for each test (seed printed, or fixed by FATTN_TEST_SEED)."""
    seed = int(os.environ.get("FATTN_TEST_SEED", random.SystemRandom().randrange(2**31)))
    print(f"{request.node.name}: seed {seed}")
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def poison(monkeypatch):
    """Every floating tensor torch.empty makes during the test starts as NaN, so an output the
    kernel leaves partly unwritten shows up as NaN."""
    empty = torch.empty

    def poisoned(*args, **kwargs):
        t = empty(*args, **kwargs)
        if t.is_floating_point():
            t.fill_(float("nan"))
        return t

    monkeypatch.setattr(torch, "empty", poisoned)


def randn(gen, shape, dtype, device):
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def reference(q, k, v, scale=None, causal=False):
    """float64 torch SDPA on BSHD inputs with fattn's semantics: GQA, bottom-right causal
    alignment, and zeros (LSE -inf) for a query row that sees no key. Returns (out, lse)."""
    q, k, v = (t.double().transpose(1, 2) for t in (q, k, v))
    sq, skv, d = q.shape[2], k.shape[2], q.shape[3]
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scale = 1 / math.sqrt(d) if scale is None else scale
    visible = torch.ones(sq, skv, dtype=torch.bool, device=q.device)
    if causal:
        visible = visible.tril(diagonal=skv - sq)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=visible, scale=scale)
    sees_none = ~visible.any(dim=1)
    out = out.masked_fill(sees_none[:, None], 0.0)
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~visible, float("-inf"))
    return out.transpose(1, 2), torch.logsumexp(scores, dim=-1)


def rel_l2(actual, expected):
    expected = expected.double().cpu()
    diff = actual.double().cpu() - expected
    return (diff.norm() / expected.norm().clamp_min(1e-30)).item()


def tf32_path(device, head_dim):
    """Whether fp32 runs on the Hopper kernel's tf32 path: sm_90, head_dim <= 128, not forced portable."""
    device = torch.device(device)
    forced = os.environ.get("FATTN_FORCE_PORTABLE", "") not in ("", "0")
    return (device.type == "cuda" and not forced and head_dim <= 128
            and torch.cuda.get_device_capability(device) == (9, 0))


def tolerance(dtype, device, head_dim):
    # docs/design.md: fp32 on the GPU meets 1e-3 on the tf32 path, 1e-2 where the portable kernel
    # stages it as bf16.
    if dtype == torch.float32 and torch.device(device).type == "cuda" and not tf32_path(device, head_dim):
        return 1e-2
    return TOLERANCE[dtype]


def assert_close(actual, expected, dtype):
    """actual: an attention output, head dim last."""
    assert not actual.isnan().any(), "output holds NaN: part of it was not written"
    err, bound = rel_l2(actual, expected), tolerance(dtype, actual.device, actual.shape[-1])
    assert err <= bound, f"relative L2 error {err:.3e} > {bound:.0e}"


@pytest.fixture(scope="session", autouse=True)
def library():
    """Fails (not skips) when libfattn is missing: CI builds it before the tests."""
    return fattn.capi.load_library()
