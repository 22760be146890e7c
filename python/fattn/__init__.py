"""fattn for PyTorch: FlashAttention-3-class attention from libfattn.

    import fattn
    out = fattn.custom_attn(q, k, v)                  # BSHD; exports as attn::CustomAttnPlugin
    out = fattn.flash_attn_func(q, k, v, causal=True)  # FA3's calling convention
    with fattn.redirect_sdpa():                        # F.scaled_dot_product_attention -> fattn
        y = model(x)

libfattn ships inside the package (pip install ./python builds it with the project's CMake: CUDA
kernels when nvcc is found, CPU only otherwise). $FATTN_LIBRARY, when set, overrides it; without
the packaged copy, the repository's unsanitized build folders and then the system's library path
are tried (fattn.capi.load_library). It is loaded on first use; fattn.info() (or python -m fattn)
says which library runs and whether it has the CUDA kernels.
"""
from . import capi, export, ops  # importing ops registers torch.ops.attn.*
from .capi import FattnError, LibraryNotFound, info
from .export import export_onnx
from .functional import (custom_attn, flash_attn_func, redirect_sdpa,
                         scaled_dot_product_attention)

export.register_legacy_symbolic()

__all__ = ["FattnError", "LibraryNotFound", "capi", "custom_attn", "export", "export_onnx",
           "flash_attn_func", "info", "ops", "redirect_sdpa", "scaled_dot_product_attention"]
