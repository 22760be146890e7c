"""The operators' registration (opcheck), argument errors, and torch.compile."""
import pytest
import torch

import fattn
from conftest import DEVICES, assert_close, randn, reference


def _samples(gen, device):
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        yield (randn(gen, (2, 13, 4, 64), dtype, device), randn(gen, (2, 21, 2, 64), dtype, device),
               randn(gen, (2, 21, 2, 64), dtype, device))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_custom_attn(gen, device):
    for q, k, v in _samples(gen, device):
        torch.library.opcheck(torch.ops.attn.custom_attn.default, (q, k, v, 0))
        # A BHSD storage seen as BSHD: the op must not depend on contiguity.
        torch.library.opcheck(torch.ops.attn.custom_attn.default,
                              (q.transpose(1, 2).contiguous().transpose(1, 2), k, v, 0))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_flash_attn(gen, device):
    for q, k, v in _samples(gen, device):
        for scale, causal, return_lse in ((0.0, False, False), (0.25, True, True)):
            torch.library.opcheck(torch.ops.attn.flash_attn.default,
                                  (q, k, v, 0, scale, causal, return_lse))


@pytest.mark.parametrize("make, message", [
    (lambda: (torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 4), 0),
     r"q must be 4-D .* got shape \(2, 3, 4\)"),
    (lambda: (torch.randn(1, 3, 2, 8), torch.randn(1, 5, 2, 8), torch.randn(1, 4, 2, 8), 0),
     r"v's shape \(1, 4, 2, 8\) differs from k's \(1, 5, 2, 8\)"),
    (lambda: (torch.randn(1, 3, 2, 8), torch.randn(2, 5, 2, 8), torch.randn(2, 5, 2, 8), 0),
     r"k's batch \(2\) differs from q's \(1\)"),
    (lambda: (torch.randn(1, 3, 2, 8), torch.randn(1, 5, 2, 16), torch.randn(1, 5, 2, 16), 0),
     r"k's head_dim \(16\) differs from q's \(8\)"),
    (lambda: (torch.randn(1, 3, 2, 8), torch.randn(1, 5, 2, 8).half(),
              torch.randn(1, 5, 2, 8).half(), 0), r"dtypes differ"),
    (lambda: (torch.randn(1, 3, 2, 8).double(), torch.randn(1, 5, 2, 8).double(),
              torch.randn(1, 5, 2, 8).double(), 0), r"q.dtype \(torch.float64\)"),
    (lambda: (torch.randn(1, 3, 2, 8), torch.randn(1, 5, 2, 8), torch.randn(1, 5, 2, 8), 2),
     r"mode \(2\) must be the int 0"),
])
def test_bad_arguments_name_the_field(make, message):
    args = make()
    with pytest.raises(ValueError, match=message):
        torch.ops.attn.custom_attn(*args)
    with pytest.raises(ValueError, match=message):
        with torch._subclasses.FakeTensorMode() as mode:
            torch.ops.attn.custom_attn(*(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a
                                         for a in args))


def test_libfattn_errors_carry_its_message():
    q = torch.randn(1, 3, 6, 8)
    kv = torch.randn(1, 5, 4, 8)
    with pytest.raises(fattn.FattnError, match=r"heads_q \(6\) is not a multiple of heads_kv \(4\)"):
        fattn.custom_attn(q, kv, kv)
    q = torch.randn(1, 3, 2, 300)
    with pytest.raises(fattn.FattnError, match=r"head_dim \(300\)"):
        fattn.custom_attn(q, q, q)


def test_flash_attn_func_rejects_what_it_cannot_do():
    q = torch.randn(1, 4, 2, 16)
    with pytest.raises(ValueError, match="window_size"):
        fattn.flash_attn_func(q, q, q, window_size=(8, 0))
    with pytest.raises(ValueError, match="softcap"):
        fattn.flash_attn_func(q, q, q, softcap=30.0)
    with pytest.raises(ValueError, match=r"scale \(nan\)"):
        fattn.flash_attn_func(q, q, q, softmax_scale=float("nan"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(causal=2), r"causal \(2\) must be a bool"),
    (dict(causal=1), r"causal \(1\) must be a bool"),
    (dict(mode=True), r"mode \(True\) must be the int 0"),
    (dict(mode=0.0), r"mode \(0.0\) must be the int 0"),
    (dict(mode=2), r"mode \(2\) must be the int 0"),
    (dict(mode=-1), r"mode \(-1\) must be the int 0"),
    (dict(softmax_scale="0.5"), r"scale \('0.5'\) must be a finite float"),
])
def test_flags_are_refused_by_name(kwargs, message):
    q = torch.randn(1, 4, 2, 16)
    with pytest.raises(ValueError, match=message):
        fattn.flash_attn_func(q, q, q, **kwargs)
    if set(kwargs) == {"mode"}:
        with pytest.raises(ValueError, match=message):
            fattn.custom_attn(q, q, q, **kwargs)


def test_forward_only():
    q = torch.randn(1, 4, 2, 16, requires_grad=True)
    out = fattn.custom_attn(q, q.detach(), q.detach())
    with pytest.raises(RuntimeError):
        out.sum().backward()


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph(gen, device):
    torch._dynamo.reset()

    def block(q, k, v):
        a = fattn.custom_attn(q, k, v)
        b = fattn.flash_attn_func(q, k, v, softmax_scale=0.2, causal=True)
        return (a + b).relu()

    compiled = torch.compile(block, fullgraph=True, dynamic=True)
    for sq in (11, 24):
        q = randn(gen, (1, sq, 4, 64), torch.float32, device)
        k = randn(gen, (1, 30, 2, 64), torch.float32, device)
        v = randn(gen, (1, 30, 2, 64), torch.float32, device)
        expected = (reference(q, k, v)[0] + reference(q, k, v, 0.2, True)[0]).relu()
        assert_close(compiled(q, k, v), expected, torch.float32)
