"""Numerics of the op against float64 SDPA, on the CPU and (when present) the GPU."""
import pytest
import torch

import fattn
from fattn import capi, ops
from conftest import DEVICES, assert_close, randn, reference, rel_l2

DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (batch, seqlen_q, seqlen_kv, heads_q, heads_kv, head_dim, causal): the protocol's edge cases
# at sizes the 2-core CI machine runs quickly.
CASES = [
    (1, 1, 1, 1, 1, 64, False),      # seqlen 1
    (2, 37, 37, 4, 4, 64, True),     # lengths off every tile multiple
    (1, 19, 70, 8, 2, 128, True),    # Sq < Skv causal, GQA 4:1
    (1, 70, 19, 8, 1, 64, True),     # Sq > Skv causal (rows that see no key), MQA
    (2, 45, 33, 8, 1, 96, False),    # MQA
    (1, 33, 65, 16, 2, 128, False),  # GQA 8:1
    (1, 17, 23, 2, 2, 256, False),   # largest head dim
    (1, 150, 130, 2, 2, 192, True),  # several tiles each way
    # Head dims the CPU path serves and a GPU kernel may not (then: UNSUPPORTED, never wrong).
    (1, 70, 19, 8, 1, 32, True),
    (1, 9, 9, 2, 2, 16, True),
    (1, 33, 65, 16, 2, 80, False),
]


def _ids(case):
    b, sq, skv, hq, hkv, d, causal = case
    return f"b{b}-sq{sq}-skv{skv}-h{hq}:{hkv}-d{d}" + ("-causal" if causal else "")


def _qkv(gen, case, dtype, device):
    b, sq, skv, hq, hkv, d, _ = case
    return (randn(gen, (b, sq, hq, d), dtype, device), randn(gen, (b, skv, hkv, d), dtype, device),
            randn(gen, (b, skv, hkv, d), dtype, device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_flash_attn_matches_reference(gen, poison, device, dtype, case):
    q, k, v = _qkv(gen, case, dtype, device)
    causal = case[-1]
    try:
        out, lse = fattn.flash_attn_func(q, k, v, causal=causal, return_attn_probs=True)
    except fattn.FattnError as err:
        if device == "cuda" and err.status == capi.ERR_UNSUPPORTED:
            pytest.skip(f"no GPU kernel: {err}")
        raise
    ref, ref_lse = reference(q, k, v, causal=causal)
    assert out.shape == q.shape and out.dtype == dtype and out.device == q.device
    assert_close(out, ref, dtype)
    assert lse.shape == (q.shape[0], q.shape[2], q.shape[1]) and lse.dtype == torch.float32
    seen = ref_lse.isfinite()
    assert torch.equal(lse.cpu().isfinite(), seen.cpu()), "LSE is finite exactly where a key is seen"
    lse_bound = 5e-2 if device == "cuda" and dtype == torch.float32 else 1e-3
    assert (lse.double().cpu()[seen.cpu()] - ref_lse.cpu()[seen.cpu()]).abs().max() < lse_bound


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_custom_attn_plain_and_scaled(gen, poison, device, dtype):
    case = (2, 29, 41, 4, 2, 64, False)
    q, k, v = _qkv(gen, case, dtype, device)
    assert_close(fattn.custom_attn(q, k, v), reference(q, k, v)[0], dtype)
    assert_close(fattn.flash_attn_func(q, k, v, softmax_scale=0.3), reference(q, k, v, 0.3)[0],
                 dtype)


def _spy_launch(monkeypatch):
    """Records the tensors that reach libfattn, to tell views from copies."""
    seen = []
    launch = ops._launch

    def spy(q, k, v, *rest):
        seen.append((q, k, v))
        return launch(q, k, v, *rest)

    monkeypatch.setattr(ops, "_launch", spy)
    return seen


@pytest.mark.parametrize("device", DEVICES)
def test_strided_views_reach_libfattn_without_copies(gen, poison, monkeypatch, device):
    dtype = torch.float16
    b, s, h, d = 2, 27, 4, 64
    seen = _spy_launch(monkeypatch)
    # BHSD storage viewed as BSHD (SDPA's layout).
    bhsd = [randn(gen, (b, h, s, d), dtype, device).transpose(1, 2) for _ in range(3)]
    # Packed QKV (B, S, 3, H, D).
    packed = randn(gen, (b, s, 3, h, d), dtype, device).unbind(2)
    # One KV head broadcast over four with stride 0 (inputs may alias).
    kv = randn(gen, (b, s, 1, d), dtype, device).expand(b, s, h, d)
    expanded = (randn(gen, (b, s, h, d), dtype, device), kv, kv)
    for q, k, v in (bhsd, packed, expanded):
        out = fattn.custom_attn(q, k, v)
        assert_close(out, reference(q, k, v)[0], dtype)
        assert [t.data_ptr() for t in seen[-1]] == [q.data_ptr(), k.data_ptr(), v.data_ptr()]
        assert [t.stride() for t in seen[-1]] == [q.stride(), k.stride(), v.stride()]


@pytest.mark.parametrize("device", DEVICES)
def test_strided_head_dim_is_copied(gen, poison, monkeypatch, device):
    seen = _spy_launch(monkeypatch)
    q, k, v = (randn(gen, (1, 64, 12, 3), torch.float32, device).permute(0, 3, 2, 1)
               for _ in range(3))
    assert q.stride(3) != 1
    out = fattn.custom_attn(q, k, v)
    assert_close(out, reference(q, k, v)[0], torch.float32)
    assert all(t.is_contiguous() for t in seen[-1])


@pytest.mark.parametrize("device", DEVICES)
def test_empty_sizes(device):
    q = torch.randn(0, 5, 2, 16, device=device)
    assert fattn.custom_attn(q, q, q).shape == q.shape
    q = torch.randn(1, 5, 2, 16, device=device)
    kv = torch.randn(1, 0, 2, 16, device=device)
    out, lse = fattn.flash_attn_func(q, kv, kv, return_attn_probs=True)
    assert torch.equal(out, torch.zeros_like(q))
    assert torch.isneginf(lse).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_fp8_mode_on_cpu(gen, dtype):
    """mode 1 on CPU tensors: e4m3's 3-bit mantissa bounds the error (about 5e-2 on N(0, 1)),
    whatever the inputs' magnitude, and inputs far beyond e4m3's 448 stay finite."""
    q, k, v = _qkv(gen, (1, 300, 300, 4, 2, 128, False), dtype, "cpu")
    out = fattn.custom_attn(q, k, v, 1)
    err = rel_l2(out, reference(q, k, v)[0])
    assert err <= 6e-2, f"FP8 relative L2 error {err:.3e}"
    assert not torch.equal(out, fattn.custom_attn(q, k, v, 0)), "mode 1 computed natively"
    big = fattn.custom_attn(q * 1000, k * 1000, v * 1000, 1)
    assert torch.isfinite(big).all()
    out, lse = fattn.flash_attn_func(q, k, v, causal=True, return_attn_probs=True, mode=1)
    ref_out, ref_lse = reference(q, k, v, causal=True)
    assert rel_l2(out, ref_out) <= 6e-2
    assert (lse - ref_lse).abs().max().item() <= 0.15  # logits carry e4m3 error too


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_fp8_mode_on_gpu_is_accurate_or_unsupported(gen, poison, dtype):
    q, k, v = _qkv(gen, (1, 300, 300, 4, 4, 128, False), dtype, "cuda")
    try:
        out = fattn.custom_attn(q, k, v, 1)
    except fattn.FattnError as err:
        assert err.status == capi.ERR_UNSUPPORTED, err
        pytest.skip(f"FP8 mode unsupported here: {err}")
    err = rel_l2(out, reference(q, k, v)[0])
    assert err <= 6e-2, f"FP8 relative L2 error {err:.3e}"


@pytest.mark.cuda
def test_runs_on_the_current_stream_and_in_cuda_graphs(gen):
    dtype = torch.bfloat16
    q, k, v = _qkv(gen, (1, 200, 200, 8, 2, 128, True), dtype, "cuda")
    ref = reference(q, k, v, causal=True)[0]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = fattn.flash_attn_func(q, k, v, causal=True)
    side.synchronize()
    assert_close(out, ref, dtype)

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = fattn.flash_attn_func(q, k, v, causal=True)
    q.copy_(randn(torch.Generator().manual_seed(7), q.shape, dtype, "cuda"))
    graph.replay()
    torch.cuda.synchronize()
    assert_close(captured, reference(q, k, v, causal=True)[0], dtype)


@pytest.mark.cuda
def test_follows_the_tensors_device():
    if torch.cuda.device_count() < 2:
        pytest.skip("one CUDA device")
    q = torch.randn(1, 16, 2, 64, device="cuda:1", dtype=torch.float16)
    assert_close(fattn.custom_attn(q, q, q), reference(q, q, q)[0], torch.float16)
