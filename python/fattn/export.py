"""ONNX export of fattn's operator as the TensorRT plugin's node.

The node TensorRT's ONNX parser maps onto the plugin: op_type ``CustomAttnPlugin``, attributes
``plugin_version`` and ``plugin_namespace`` (how the parser picks the creator), ``mode`` (INT),
and the creator's optional fields ``causal`` (INT) and ``scale`` (FLOAT) when they differ from
their defaults. The domain ``attn`` is informational: the parser ignores it.

Three routes produce that node:

* :func:`fattn.custom_attn` under the dynamo exporter (the default): it emits the node itself with
  ``torch.onnx.ops.symbolic``; nothing needs registering.
* ``torch.ops.attn.custom_attn`` or ``torch.ops.attn.flash_attn`` called directly, under the
  dynamo exporter: :func:`export_onnx` rewrites them with :func:`decompositions` first.
* Either, under the legacy TorchScript exporter (``dynamo=False``): importing fattn registers
  symbolic functions for ``attn::custom_attn`` and ``attn::flash_attn``.
"""
import torch

from . import ops

DOMAIN = "attn"
PLUGIN_NAME = "CustomAttnPlugin"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
# Version of the custom `attn` opset the node is recorded under.
OPSET_VERSION = 1


def node_attributes(mode, causal=False, scale=0.0):
    """The node's attributes, as the plugin's creator reads them, after the op's own checks
    (fattn.ops: the same rules as libfattn's and the plugin's). The creator's optional fields
    causal and scale appear only when they differ from their defaults (False; 0, which the
    plugin reads as 1/sqrt(head_dim)), so the plain operator's node carries mode alone."""
    ops.check_mode(mode)
    ops.check_causal(causal)
    scale = ops.check_scale(scale)
    attrs = {"mode": mode, "plugin_version": PLUGIN_VERSION,
             "plugin_namespace": PLUGIN_NAMESPACE}
    if causal:
        attrs["causal"] = 1
    if scale != 0.0:
        attrs["scale"] = scale
    return attrs


def symbolic_node(q, k, v, mode, causal=False, scale=0.0):
    """Emits the plugin node into the graph the dynamo exporter is tracing."""
    out = torch.onnx.ops.symbolic(f"{DOMAIN}::{PLUGIN_NAME}", (q, k, v),
                                  node_attributes(mode, causal, scale), dtype=q.dtype,
                                  shape=q.shape, version=OPSET_VERSION)
    # The traced output is made on the CPU whatever the inputs' device; moving it back keeps a
    # CUDA model traceable, and the move exports as nothing.
    return out if out.device == q.device else out.to(q.device)


def is_dynamo_export():
    """True while torch.onnx.export(dynamo=True) traces; the legacy exporter traces with the
    TorchScript tracer, which cannot record torch.onnx.ops.symbolic nodes."""
    return torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing()


def _flash_attn_node(q, k, v, mode, scale, causal, return_lse):
    if return_lse:
        raise RuntimeError(f"{PLUGIN_NAME} has no log-sum-exp output: return_lse does not export")
    return (symbolic_node(q, k, v, mode, causal, scale),
            q.new_empty((0,), dtype=torch.float32))


def decompositions():
    """Rewrites direct calls of fattn's operators into the plugin node, for
    ExportedProgram.run_decompositions before torch.onnx.export (export_onnx applies it)."""
    return {
        torch.ops.attn.custom_attn.default: symbolic_node,
        torch.ops.attn.flash_attn.default: _flash_attn_node,
    }


_LEGACY_SUFFIX = {int: "i", float: "f", str: "s"}


def _legacy_node(g, q, k, v, mode, causal=False, scale=0.0):
    attrs = {f"{key}_{_LEGACY_SUFFIX[type(val)]}": val
             for key, val in node_attributes(mode, causal, scale).items()}
    return g.op(f"{DOMAIN}::{PLUGIN_NAME}", q, k, v, **attrs).setTypeAs(q)


def _legacy_custom_attn(g, q, k, v, mode):
    from torch.onnx import symbolic_helper

    return _legacy_node(g, q, k, v, symbolic_helper._get_const(mode, "i", "mode"))


def _legacy_flash_attn(g, q, k, v, mode, scale, causal, return_lse):
    from torch.onnx import symbolic_helper

    if symbolic_helper._get_const(return_lse, "b", "return_lse"):
        raise RuntimeError(f"{PLUGIN_NAME} has no log-sum-exp output: return_lse does not export")
    o = _legacy_node(g, q, k, v, symbolic_helper._get_const(mode, "i", "mode"),
                     bool(symbolic_helper._get_const(causal, "b", "causal")),
                     symbolic_helper._get_const(scale, "f", "scale"))
    # The op's second output (an empty LSE) has no reader in an exported model.
    return o, g.op("Constant", value_t=torch.empty((0,), dtype=torch.float32))


def register_legacy_symbolic():
    """Teaches the legacy exporter attn::custom_attn and attn::flash_attn (from opset 1 on). A
    no-op on a torch without the legacy exporter."""
    register = getattr(torch.onnx, "register_custom_op_symbolic", None)
    if register is not None:
        register(f"{DOMAIN}::custom_attn", _legacy_custom_attn, 1)
        register(f"{DOMAIN}::flash_attn", _legacy_flash_attn, 1)


def _name_axes(onnx_program, dynamic_shapes):
    """Names the model's dynamic axes after their torch.export.Dim ("batch" rather than torch's
    symbol "s77"), for dynamic_shapes given per positional input."""
    if not isinstance(dynamic_shapes, (tuple, list)) or not hasattr(onnx_program, "rename_axes"):
        return
    mapping = {}
    for value, spec in zip(onnx_program.model.graph.inputs, dynamic_shapes):
        for axis, dim in (spec or {}).items():
            symbol = getattr(value.shape[axis], "value", None)
            if isinstance(symbol, str) and hasattr(dim, "__name__"):
                mapping[symbol] = dim.__name__
    onnx_program.rename_axes(mapping)


def export_onnx(model, args, path, *, kwargs=None, dynamo=True, dynamic_shapes=None,
                dynamic_axes=None, external_data=True, **export_kwargs):
    """torch.onnx.export with fattn's operators mapped onto the plugin node, saved to `path`.

    dynamo=True (the default): torch.export with `dynamic_shapes`, then the exporter; weights go
    to `<path>.data` beside the model when external_data is true (needed past protobuf's 2 GiB
    limit; TensorRT's parser reads it). dynamo=False: the legacy exporter with `dynamic_axes`; it
    switches to external data by itself once the model passes 2 GiB. Other keyword arguments go
    to torch.onnx.export (input_names, output_names, opset_version, ...). Returns the
    ONNXProgram (dynamo) or None.
    """
    if dynamo:
        program = torch.export.export(model, tuple(args), kwargs=kwargs,
                                      dynamic_shapes=dynamic_shapes, strict=False)
        program = program.run_decompositions(decompositions())
        onnx_program = torch.onnx.export(program, dynamo=True, **export_kwargs)
        _name_axes(onnx_program, dynamic_shapes)
        onnx_program.save(str(path), external_data=external_data)
        return onnx_program
    torch.onnx.export(model, tuple(args), str(path), kwargs=kwargs, dynamo=False,
                      dynamic_axes=dynamic_axes, **export_kwargs)
    return None
