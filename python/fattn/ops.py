"""The PyTorch operators backed by libfattn.

Two operators live in the `attn` namespace:

* ``torch.ops.attn.custom_attn(q, k, v, mode)`` -- the TensorRT plugin's operator: non-causal,
  scale 1/sqrt(head_dim). It exports to the ONNX node ``attn::CustomAttnPlugin``.
* ``torch.ops.attn.flash_attn(q, k, v, mode, scale, causal, return_lse)`` -- the general forward
  behind :func:`fattn.flash_attn_func` and the SDPA redirection; it exports to the same node with
  the plugin's ``causal`` and ``scale`` fields.

Both take q [B, Sq, Hq, D] and k, v [B, Skv, Hkv, D] (BSHD, the plugin's layout 0) in fp32, fp16
or bf16, return a fresh contiguous output of q's shape and dtype, and are forward-only.

Inputs are passed to libfattn as strided views, without a copy, whenever the head dimension is
contiguous (BSHD, BHSD transposed to BSHD, packed QKV slices and stride-0 ``expand`` views all
qualify). A contiguous copy of the inputs is made only when (a) a tensor's last dimension is
strided, or (b) libfattn refuses the views as given (for instance an address the GPU kernel
cannot load with its vector width) and accepts dense copies instead.
"""
import math

import torch

from . import capi

_DTYPES = {
    torch.float32: capi.DTYPE_F32,
    torch.float16: capi.DTYPE_F16,
    torch.bfloat16: capi.DTYPE_BF16,
}
_MODES = (capi.MODE_NATIVE, capi.MODE_FP8)
_FLOAT32_MAX = 3.4028234663852886e38


def check_inputs(q, k, v, mode):
    """Checks what libfattn cannot see from its parameters (it derives every size from q and k).

    Raises ValueError naming the argument and value; used by the real and the fake kernels alike.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(
                f"{name} must be 4-D [batch, seq, heads, head_dim] (BSHD); got shape {tuple(t.shape)}")
        if t.dtype not in _DTYPES:
            raise ValueError(f"{name}.dtype ({t.dtype}) is not float32, float16 or bfloat16")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k, v devices differ: {q.device}, {k.device}, {v.device}")
    if v.shape != k.shape:
        raise ValueError(f"v's shape {tuple(v.shape)} differs from k's {tuple(k.shape)}")
    if k.shape[0] != q.shape[0]:
        raise ValueError(f"k's batch ({k.shape[0]}) differs from q's ({q.shape[0]})")
    if k.shape[3] != q.shape[3]:
        raise ValueError(f"k's head_dim ({k.shape[3]}) differs from q's ({q.shape[3]})")
    check_mode(mode)


def check_mode(mode):
    """mode must be the int 0 (native precision) or 1 (FP8); a bool is refused rather than read
    as 0/1, since it means a flag was passed in mode's place."""
    if isinstance(mode, bool) or not isinstance(mode, int) or mode not in _MODES:
        raise ValueError(f"mode ({mode!r}) must be the int 0 (native precision) or 1 (FP8)")


def check_scale(scale):
    """libfattn's one rule for the softmax scale, applied here so that the op, the exporters and
    the plugin agree before anything runs: any finite number, negative included; 0 selects
    1/sqrt(head_dim). Returns it as a float."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ValueError(f"scale ({scale!r}) must be a finite float (0 selects 1/sqrt(head_dim))")
    scale = float(scale)
    # The value reaches libfattn and the ONNX node as a 32-bit float.
    if not math.isfinite(scale) or abs(scale) > _FLOAT32_MAX:
        raise ValueError(f"scale ({scale!r}) must be a finite float (0 selects 1/sqrt(head_dim))")
    return scale


def check_causal(causal):
    if not isinstance(causal, bool):
        raise ValueError(f"causal ({causal!r}) must be a bool")


def _view(t):
    """A fattn_tensor for a BSHD tensor whose last dimension is contiguous.

    A size-1 dimension is never stepped over, so its stride is arbitrary in torch; it is given
    the dense value so that libfattn's stride checks see an ordinary layout.
    """
    b, s, h, d = t.shape
    strides = [t.stride(i) if t.shape[i] != 1 else dense for i, dense in
               enumerate((s * h * d, h * d, d))]
    return capi.tensor(t.data_ptr(), *strides)


def _params(q, k, v, o, mode, scale, causal, lse):
    return capi.make_params(
        batch=q.shape[0], seqlen_q=q.shape[1], seqlen_kv=k.shape[1], heads_q=q.shape[2],
        heads_kv=k.shape[2], head_dim=q.shape[3], dtype=_DTYPES[q.dtype], mode=mode,
        causal=causal, scale=scale, q=_view(q), k=_view(k), v=_view(v), o=_view(o),
        lse=lse.data_ptr() if lse is not None else None)


def _head_dim_contiguous(t):
    return t.shape[3] == 1 or t.stride(3) == 1


def _launch(q, k, v, mode, scale, causal, return_lse):
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = (torch.empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32, device=q.device)
           if return_lse else None)
    params = _params(q, k, v, o, mode, scale, causal, lse)
    if q.device.type == "cpu":
        capi.cpu_forward(params, torch.get_num_threads())
    else:
        with torch.cuda.device(q.device):
            nbytes = capi.cuda_workspace_size(params)
            # From torch's caching allocator: freed after the call, it is reused only by work
            # ordered after the kernel on this stream.
            workspace = torch.empty(nbytes, dtype=torch.uint8, device=q.device) if nbytes else None
            capi.cuda_forward(params, workspace.data_ptr() if nbytes else None, nbytes,
                              torch.cuda.current_stream(q.device).cuda_stream)
    return o, lse


def _empty_result(q, return_lse):
    """Zero-size problems: libfattn rejects empty sizes, torch users expect them to work.
    With no keys every query row sees nothing, so the output is zeros and the LSE -inf."""
    o = torch.zeros(q.shape, dtype=q.dtype, device=q.device)
    lse = (torch.full((q.shape[0], q.shape[2], q.shape[1]), float("-inf"), device=q.device)
           if return_lse else None)
    return o, lse


def forward(q, k, v, mode=capi.MODE_NATIVE, scale=0.0, causal=False, return_lse=False):
    """Runs libfattn on q, k, v (BSHD). Returns (o, lse or None). Raises capi.FattnError when
    libfattn refuses the call (status FATTN_ERR_UNSUPPORTED for valid but unserved requests)."""
    check_inputs(q, k, v, mode)
    scale = check_scale(scale)
    check_causal(causal)
    if q.device.type not in ("cpu", "cuda"):
        raise ValueError(f"fattn runs on cpu and cuda tensors; got device {q.device}")
    if q.numel() == 0 or k.numel() == 0:
        return _empty_result(q, return_lse)
    inputs = [t if _head_dim_contiguous(t) else t.contiguous() for t in (q, k, v)]
    try:
        return _launch(*inputs, mode, scale, causal, return_lse)
    except capi.FattnError as err:
        refusable = err.status in (capi.ERR_INVALID_ARGUMENT, capi.ERR_UNSUPPORTED)
        if not refusable or all(t.is_contiguous() for t in inputs):
            raise
    return _launch(*(t.contiguous() for t in inputs), mode, scale, causal, return_lse)


@torch.library.custom_op("attn::custom_attn", mutates_args=(), device_types=("cpu", "cuda"))
def custom_attn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: int) -> torch.Tensor:
    """The plugin's operator: softmax(Q K^T / sqrt(D)) V over BSHD inputs, mode 0 (input
    precision) or 1 (FP8 attention, quantised inside libfattn: CPU tensors always, CUDA ones where
    the device has an FP8 kernel, else FattnError FATTN_ERR_UNSUPPORTED). See the module
    docstring for copies."""
    return forward(q, k, v, mode)[0]


@custom_attn.register_fake
def _custom_attn_fake(q, k, v, mode):
    check_inputs(q, k, v, mode)
    return q.new_empty(q.shape)


@torch.library.custom_op("attn::flash_attn", mutates_args=(), device_types=("cpu", "cuda"))
def flash_attn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: int, scale: float,
               causal: bool, return_lse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The general forward: scale 0 means 1/sqrt(D); causal is bottom-right aligned. The second
    output is the fp32 log-sum-exp [B, Hq, Sq] when return_lse, else an empty tensor."""
    o, lse = forward(q, k, v, mode, scale, causal, return_lse)
    return o, lse if lse is not None else q.new_empty((0,), dtype=torch.float32)


@flash_attn.register_fake
def _flash_attn_fake(q, k, v, mode, scale, causal, return_lse):
    check_inputs(q, k, v, mode)
    check_scale(scale)
    check_causal(causal)
    lse_shape = (q.shape[0], q.shape[2], q.shape[1]) if return_lse else (0,)
    return q.new_empty(q.shape), q.new_empty(lse_shape, dtype=torch.float32)
