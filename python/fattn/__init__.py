"""fattn for PyTorch: FlashAttention-3-class attention from libfattn.

    import fattn
    out = fattn.custom_attn(q, k, v)                  # BSHD; exports as attn::CustomAttnPlugin
    out = fattn.flash_attn_func(q, k, v, causal=True)  # FA3's calling convention
    with fattn.redirect_sdpa():                        # F.scaled_dot_product_attention -> fattn
        y = model(x)

libfattn is found through $FATTN_LIBRARY, the package's lib/ folder, the repository's unsanitized
build folders, then the system's library path (see fattn.capi.load_library); it is loaded on first
use.
"""
from . import capi, export, ops  # importing ops registers torch.ops.attn.*
from .capi import FattnError, LibraryNotFound
from .export import export_onnx
from .functional import (custom_attn, flash_attn_func, redirect_sdpa,
                         scaled_dot_product_attention)

export.register_legacy_symbolic()

__all__ = ["FattnError", "LibraryNotFound", "capi", "custom_attn", "export", "export_onnx",
           "flash_attn_func", "ops", "redirect_sdpa", "scaled_dot_product_attention"]
