"""User-facing functions: the plugin's op, FA3's calling convention, and SDPA redirection."""
import contextlib
import logging
import math
import threading

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import capi, export, ops

_log = logging.getLogger("fattn")


def custom_attn(q, k, v, mode=0):
    """softmax(Q K^T / sqrt(D)) V on BSHD tensors through libfattn; output like q.

    Under torch.onnx.export this becomes the TensorRT plugin's node ``attn::CustomAttnPlugin``
    (with either exporter). Inputs are used in place when their head dim is contiguous; see
    fattn.ops for the cases that copy.
    """
    # Checked here as well as in the op: the op's schema would turn mode=True into 1 unseen.
    ops.check_mode(mode)
    if export.is_dynamo_export():
        return export.symbolic_node(q, k, v, mode)
    return torch.ops.attn.custom_attn(q, k, v, mode)


def flash_attn_func(q, k, v, softmax_scale=None, causal=False, *, window_size=(-1, -1),
                    softcap=0.0, return_attn_probs=False, mode=0):
    """FlashAttention-3's flash_attn_func over libfattn: q [B, Sq, Hq, D], k, v [B, Skv, Hkv, D].

    causal is bottom-right aligned (as FA2/FA3). With return_attn_probs, returns (out, lse) with
    lse fp32 [B, Hq, Sq], as FA3 does. mode=1 asks for FP8 attention with I/O in the input dtype
    (FA3 takes FP8 inputs and descales instead): Q, K, V and P quantised to e4m3 inside libfattn
    (include/fattn.h); CUDA devices without an FP8 kernel raise FattnError FATTN_ERR_UNSUPPORTED.
    Sliding windows and softcap are not implemented and raise.
    Forward only: no gradient flows.
    """
    if tuple(window_size) != (-1, -1):
        raise ValueError(f"window_size {tuple(window_size)} is not supported (only (-1, -1))")
    if softcap != 0.0:
        raise ValueError(f"softcap ({softcap}) is not supported (only 0.0)")
    # libfattn's rule (fattn.ops.check_scale): 0, like None, selects 1/sqrt(D). causal and mode
    # are checked here, before the op's schema would turn causal=2 into True and mode=True into 1.
    scale = 0.0 if softmax_scale is None else ops.check_scale(softmax_scale)
    ops.check_causal(causal)
    ops.check_mode(mode)
    if export.is_dynamo_export():
        if return_attn_probs:
            raise RuntimeError(f"{export.PLUGIN_NAME} has no log-sum-exp output: "
                               "return_attn_probs=True does not export")
        return export.symbolic_node(q, k, v, mode, causal, scale)
    if scale == 0.0 and not causal and not return_attn_probs:
        return custom_attn(q, k, v, mode)
    out, lse = torch.ops.attn.flash_attn(q, k, v, mode, scale, causal, return_attn_probs)
    return (out, lse) if return_attn_probs else out


def _sdpa_refusal(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa):
    """Why fattn will not take this SDPA call (None when it will). Errs towards refusing:
    a refused call runs torch's own SDPA, which is always right."""
    tensors = (query, key, value)
    if attn_mask is not None:
        return "attn_mask"
    if dropout_p != 0.0:
        return f"dropout_p={dropout_p}"
    if torch.compiler.is_compiling():
        return "inside torch.compile"
    if any(type(t) is not torch.Tensor or t.is_nested for t in tensors):
        return "tensor subclass or nested tensor"
    if any(t.dim() != 4 for t in tensors):
        return "not 4-D"
    if any(t.dtype != query.dtype for t in tensors) or query.dtype not in ops._DTYPES:
        return f"dtypes {query.dtype}, {key.dtype}, {value.dtype}"
    if any(t.device != query.device for t in tensors) or query.device.type not in ("cpu", "cuda"):
        return f"devices {query.device}, {key.device}, {value.device}"
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "gradient required (fattn is forward-only)"
    if any(t.numel() == 0 for t in tensors):
        return "empty tensor"
    if key.shape != value.shape or key.shape[0] != query.shape[0] or key.shape[3] != query.shape[3]:
        return f"shapes q {tuple(query.shape)}, k {tuple(key.shape)}, v {tuple(value.shape)}"
    heads_q, heads_kv = query.shape[1], key.shape[1]
    if heads_q != heads_kv and not (enable_gqa and heads_q % heads_kv == 0):
        return f"heads {heads_q} vs {heads_kv} (enable_gqa={enable_gqa})"
    # SDPA's causal mask is top-left aligned, fattn's bottom-right: they agree only on squares.
    if is_causal and query.shape[2] != key.shape[2]:
        return f"is_causal with seqlen_q {query.shape[2]} != seqlen_kv {key.shape[2]}"
    if scale is not None and (scale == 0 or not math.isfinite(scale)):
        return f"scale={scale}"
    return None


# torch's own SDPA, kept before any redirection replaces the module attribute.
_TORCH_SDPA = F.scaled_dot_product_attention
_state = threading.local()


def _torch_sdpa(*args, **kwargs):
    """torch's SDPA, past an active redirection mode (which would send it back here)."""
    _state.falling_back = True
    try:
        return _TORCH_SDPA(*args, **kwargs)
    finally:
        _state.falling_back = False


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention through libfattn where it can serve the
    call, torch's own implementation otherwise (masks, dropout, gradients, other dtypes or
    devices, SDPA's top-left causal mask on non-square shapes, or libfattn answering
    unsupported). BHSD inputs reach libfattn as transposed views, without a copy."""
    args = (query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    reason = _sdpa_refusal(*args)
    if reason is None:
        try:
            out, _ = torch.ops.attn.flash_attn(
                query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                capi.MODE_NATIVE, 0.0 if scale is None else float(scale), bool(is_causal), False)
            return out.transpose(1, 2)
        except capi.FattnError as err:
            if err.status not in (capi.ERR_UNSUPPORTED, capi.ERR_INVALID_ARGUMENT):
                raise
            reason = str(err)
    _log.debug("scaled_dot_product_attention runs in torch: %s", reason)
    return _torch_sdpa(*args[:6], scale=scale, enable_gqa=enable_gqa)


class _SDPARedirect(TorchFunctionMode):
    """Catches SDPA through references taken before the redirection (`from torch.nn.functional
    import scaled_dot_product_attention`), which the module attribute swap cannot reach."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _TORCH_SDPA and not getattr(_state, "falling_back", False):
            return scaled_dot_product_attention(*args, **kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def redirect_sdpa():
    """Within this block, F.scaled_dot_product_attention calls go to
    fattn.scaled_dot_product_attention, which falls back to torch for anything fattn does not
    serve. Calls made through torch's own Python (nn.MultiheadAttention) are reached by swapping
    the module attribute, which every thread sees while the block runs; calls through a
    reference imported earlier are reached by a torch function mode on this thread. Eager mode
    only: under torch.compile calls stay with torch."""
    previous = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = scaled_dot_product_attention
    try:
        with _SDPARedirect():
            yield
    finally:
        F.scaled_dot_product_attention = previous
