"""SDPA redirection: fattn serves what it supports, torch everything else, never a wrong answer."""
import re

import pytest
import torch
import torch.nn.functional as F
from torch.nn.functional import scaled_dot_product_attention as imported_sdpa

import fattn
from fattn import capi, ops
from conftest import DEVICES, rel_l2, randn


@pytest.fixture
def fattn_calls(monkeypatch):
    calls = []
    forward = ops.forward

    def spy(*args, **kwargs):
        calls.append(args)
        return forward(*args, **kwargs)

    monkeypatch.setattr(ops, "forward", spy)
    return calls


def _bhsd(gen, device, dtype=torch.float16, b=2, hq=4, hkv=4, sq=33, skv=33, d=64):
    return (randn(gen, (b, hq, sq, d), dtype, device), randn(gen, (b, hkv, skv, d), dtype, device),
            randn(gen, (b, hkv, skv, d), dtype, device))


def _torch_sdpa64(q, k, v, **kwargs):
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kwargs, shape", [
    ({}, {}),
    ({"is_causal": True}, {}),
    ({"scale": 0.3}, {"sq": 17, "skv": 40}),
    ({"enable_gqa": True}, {"hq": 8, "hkv": 2}),
], ids=["plain", "causal-square", "scale-rect", "gqa"])
def test_redirect_serves_supported_calls(gen, fattn_calls, device, kwargs, shape):
    q, k, v = _bhsd(gen, device, **shape)
    expected = _torch_sdpa64(q, k, v, **kwargs)
    with fattn.redirect_sdpa():
        via_module = F.scaled_dot_product_attention(q, k, v, **kwargs)
        via_import = imported_sdpa(q, k, v, **kwargs)
    assert len(fattn_calls) == 2
    for out in (via_module, via_import):
        assert out.shape == expected.shape and out.dtype == q.dtype
        assert rel_l2(out, expected) <= 5e-3


def _mask(q, k):
    return torch.rand(q.shape[2], k.shape[2], device=q.device) > 0.3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", [
    "mask", "dropout", "causal-rect", "grad", "float64", "3-D", "gqa-without-flag", "scale-0",
    "value-dim", "empty"])
def test_redirect_falls_back_to_torch(gen, fattn_calls, device, case):
    q, k, v = _bhsd(gen, device)
    kwargs = {}
    if case == "mask":
        kwargs["attn_mask"] = _mask(q, k)
    elif case == "dropout":
        kwargs["dropout_p"] = 0.5
    elif case == "causal-rect":
        q, k, v = _bhsd(gen, device, sq=10, skv=30)
        kwargs["is_causal"] = True  # torch aligns top-left, fattn bottom-right
    elif case == "grad":
        q.requires_grad_(True)
    elif case == "float64":
        q, k, v = (t.double() for t in (q, k, v))
    elif case == "3-D":
        q, k, v = (t[0] for t in (q, k, v))
    elif case == "gqa-without-flag":
        q, k, v = _bhsd(gen, device, hq=8, hkv=2)
    elif case == "scale-0":
        kwargs["scale"] = 0.0  # fattn reads 0 as 1/sqrt(d)
    elif case == "value-dim":
        v = randn(gen, (2, 4, 33, 32), q.dtype, device)
    elif case == "empty":
        q, k, v = _bhsd(gen, device, sq=0)
    torch.manual_seed(1)
    try:
        expected = F.scaled_dot_product_attention(q, k, v, **kwargs)
    except RuntimeError as err:
        with fattn.redirect_sdpa(), pytest.raises(RuntimeError, match=re.escape(str(err))):
            F.scaled_dot_product_attention(q, k, v, **kwargs)
        return
    torch.manual_seed(1)
    with fattn.redirect_sdpa():
        out = F.scaled_dot_product_attention(q, k, v, **kwargs)
    assert fattn_calls == []
    # Bit-identical, NaN included: torch's CUDA SDPA answers scale=0 with NaN.
    torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)
    if case == "grad":
        out.float().sum().backward()
        assert q.grad is not None


@pytest.mark.parametrize("status", [capi.ERR_UNSUPPORTED, capi.ERR_INVALID_ARGUMENT])
def test_redirect_falls_back_when_libfattn_refuses(gen, monkeypatch, status):
    def refuse(*args, **kwargs):
        raise capi.FattnError(status, capi.status_name(status), "refused for the test")

    monkeypatch.setattr(ops, "forward", refuse)
    q, k, v = _bhsd(gen, "cpu")
    with fattn.redirect_sdpa():
        out = F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v))


def test_redirect_is_scoped(gen, fattn_calls):
    q, k, v = _bhsd(gen, "cpu")
    with fattn.redirect_sdpa():
        F.scaled_dot_product_attention(q, k, v)
    F.scaled_dot_product_attention(q, k, v)
    assert len(fattn_calls) == 1


def test_model_under_redirect(gen, fattn_calls, monkeypatch):
    # The fused encoder fast path would skip F.scaled_dot_product_attention altogether.
    monkeypatch.setattr(torch.backends.mha, "get_fastpath_enabled", lambda: False)
    layer = torch.nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, dropout=0.0,
                                             batch_first=True).eval()
    x = randn(gen, (2, 21, 64), torch.float32, "cpu")
    with torch.no_grad():
        expected = layer(x)
        with fattn.redirect_sdpa():
            out = layer(x)
    assert len(fattn_calls) == 1
    assert rel_l2(out, expected) <= 1e-5


@pytest.mark.cuda
def test_redirect_on_a_head_dim_without_gpu_kernel(gen):
    """head_dim 36 has no GPU kernel (no multiple of 8, not a portable kernel's): whichever path
    serves it, the answer is right."""
    q, k, v = _bhsd(gen, "cuda", d=36)
    with fattn.redirect_sdpa():
        out = F.scaled_dot_product_attention(q, k, v)
    assert rel_l2(out, _torch_sdpa64(q, k, v)) <= 5e-3
