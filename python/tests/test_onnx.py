"""ONNX export: the plugin node, exactly as the plugin's creator declares it, with dynamic axes."""
import ctypes
import json
import math
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

import fattn
from fattn import export

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HIDDEN, HEADS, HEAD_DIM = 64, 4, 16


class Block(torch.nn.Module):
    """A small attention block: projections around fattn's op, BSHD in between."""

    def __init__(self, route="wrapper"):
        super().__init__()
        self.qkv = torch.nn.Linear(HIDDEN, 3 * HIDDEN)
        self.out = torch.nn.Linear(HIDDEN, HIDDEN)
        self.route = route

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, HEADS, HEAD_DIM).unbind(2)
        if self.route == "wrapper":
            o = fattn.custom_attn(q, k, v)
        elif self.route == "direct":
            o = torch.ops.attn.custom_attn(q, k, v, 0)
        elif self.route == "fp8":
            o = fattn.custom_attn(q, k, v, 1)
        else:
            o = fattn.flash_attn_func(q, k, v, softmax_scale=0.125, causal=True)
        return self.out(o.reshape(b, s, HIDDEN))


def _dynamic():
    return ({0: torch.export.Dim("batch", max=64), 1: torch.export.Dim("seq", max=8192)},)


def _export(tmp_path, route, exporter):
    model = Block(route).eval()
    x = torch.randn(2, 11, HIDDEN)
    path = tmp_path / "block.onnx"
    if exporter == "dynamo":
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=_dynamic(),
                                    input_names=["x"], output_names=["y"])
        program.save(str(path))
    elif exporter == "export_onnx":
        fattn.export_onnx(model, (x,), path, dynamic_shapes=_dynamic(), input_names=["x"],
                          output_names=["y"])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            fattn.export_onnx(model, (x,), path, dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "b", 1: "s"},
                                                                "y": {0: "b", 1: "s"}})
    return model, path


def _plugin_schema():
    """The creator's declaration, from the plugin's C core when its library is built (CTest
    passes it), else the schema file that the plugin's CTest holds to the C core's output."""
    build = os.path.dirname(os.path.dirname(os.path.realpath(fattn.capi.load_library()._name)))
    # The plugin core of the build whose libfattn is loaded: another build folder may be
    # instrumented (ASan) and cannot be loaded into this process.
    candidates = [os.environ.get("FATTN_PLUGIN_CORE_LIBRARY", ""),
                  os.path.join(build, "plugin", "libfattn_plugin_core.so")]
    for candidate in filter(None, candidates):
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        lib.fattn_plugin_schema_json.restype = ctypes.c_size_t
        lib.fattn_plugin_schema_json.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        size = lib.fattn_plugin_schema_json(None, 0) + 1
        buffer = ctypes.create_string_buffer(size)
        lib.fattn_plugin_schema_json(buffer, size)
        return json.loads(buffer.value.decode())
    with open(os.path.join(REPO, "plugin", "core", "field_schema.json")) as f:
        return json.load(f)


def _attributes(node):
    return {a.name: (onnx.AttributeProto.AttributeType.Name(a.type),
                     helper.get_attribute_value(a)) for a in node.attribute}


def _plugin_node(model):
    nodes = [n for n in model.graph.node if n.domain == export.DOMAIN]
    assert len(nodes) == 1, f"expected one node in domain attn, got {nodes}"
    assert sum(n.op_type == export.PLUGIN_NAME for n in model.graph.node) == 1
    return nodes[0]


def _assert_matches_creator(node, schema):
    assert node.op_type == schema["plugin"]
    attrs = _attributes(node)
    assert attrs.pop("plugin_version") == ("STRING", schema["version"].encode())
    assert attrs.pop("plugin_namespace") == ("STRING", schema["namespace"].encode())
    fields = {f["name"]: f["onnx_attribute_type"] for f in schema["fields"]}
    for name, (kind, _) in attrs.items():
        assert name in fields, f"attribute {name} is not a field of the creator ({list(fields)})"
        assert kind == fields[name], f"attribute {name} is {kind}, the creator reads {fields[name]}"
    assert len(node.input) == len(schema["inputs"]) and len(node.output) == len(schema["outputs"])


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


# A direct torch.ops call under plain torch.onnx.export(dynamo=True) has no translation: that
# route needs export_onnx's rewrite.
@pytest.mark.parametrize("exporter, route", [
    ("dynamo", "wrapper"), ("export_onnx", "wrapper"), ("export_onnx", "direct"),
    ("legacy", "wrapper"), ("legacy", "direct")])
def test_export_emits_exactly_the_plugin_node(tmp_path, exporter, route):
    _, path = _export(tmp_path, route, exporter)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    node = _plugin_node(model)
    assert _attributes(node) == {"mode": ("INT", 0), "plugin_version": ("STRING", b"1"),
                                 "plugin_namespace": ("STRING", b"")}
    _assert_matches_creator(node, _plugin_schema())
    assert {(o.domain, o.version) for o in model.opset_import} >= {(export.DOMAIN, 1)}
    # Batch and sequence stay symbolic from input to output; the hidden size is fixed.
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = _dims(value)
        assert isinstance(dims[0], str) and isinstance(dims[1], str) and dims[2] == HIDDEN, dims
        if exporter == "export_onnx" and hasattr(torch.onnx.ONNXProgram, "rename_axes"):
            assert dims[:2] == ["batch", "seq"]


@pytest.mark.parametrize("exporter", ["export_onnx", "dynamo", "legacy"])
@pytest.mark.parametrize("route, expected", [
    ("fp8", {"mode": ("INT", 1)}),
    ("flash", {"mode": ("INT", 0), "causal": ("INT", 1), "scale": ("FLOAT", 0.125)}),
])
def test_export_fields_beyond_mode(tmp_path, route, expected, exporter):
    _, path = _export(tmp_path, route, exporter)
    onnx.checker.check_model(str(path), full_check=True)
    node = _plugin_node(onnx.load(str(path)))
    attrs = _attributes(node)
    assert {k: v for k, v in attrs.items() if not k.startswith("plugin_")} == expected
    _assert_matches_creator(node, _plugin_schema())


def test_what_the_plugin_cannot_express_does_not_export():
    q = torch.randn(1, 4, 2, 16)

    class Lse(torch.nn.Module):
        def forward(self, q):
            return fattn.flash_attn_func(q, q, q, return_attn_probs=True)[1]

    # The exporter retries a failed trace in strict mode, which words the failure its own way.
    with pytest.raises(Exception, match="log-sum-exp|attn.flash_attn"):
        torch.onnx.export(Lse().eval(), (q,), dynamo=True)

    class LegacyLse(torch.nn.Module):
        def forward(self, q):
            return torch.ops.attn.flash_attn(q, q, q, 0, 0.5, True, True)[0]

    with warnings.catch_warnings(), pytest.raises(Exception, match="log-sum-exp"):
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(LegacyLse().eval(), (q,), os.devnull, dynamo=False)


def test_export_of_a_model_on_another_device():
    """torch.onnx.ops.symbolic traces its output on the CPU; the node must still export for a
    model on another device (meta here, CUDA in practice), with no device move left behind."""

    class Scaled(torch.nn.Module):
        def forward(self, q, k, v):
            return fattn.custom_attn(q, k, v) * 2

    q = torch.randn(2, 11, HEADS, HEAD_DIM, device="meta")
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
    program = torch.onnx.export(Scaled(), (q, q, q), dynamo=True, dynamic_shapes=(dims,) * 3)
    assert [n.op_type for n in program.model_proto.graph.node] == [export.PLUGIN_NAME, "Mul"]


def _with_reference_function(model):
    """The model plus a model-local ONNX function standing in for the plugin (plain attention
    from standard ops), so that shape inference and onnxruntime can see through the node."""
    opset = next(o.version for o in model.opset_import if o.domain == "")
    scale = numpy_helper.from_array(np.array(1 / math.sqrt(HEAD_DIM), np.float32))
    nodes = [
        helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v"], ["vt"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["qt", "kt"], ["s"]),
        helper.make_node("Constant", [], ["c"], value=scale),
        helper.make_node("Mul", ["s", "c"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "vt"], ["ot"]),
        helper.make_node("Transpose", ["ot"], ["o"], perm=[0, 2, 1, 3]),
    ]
    function = helper.make_function(
        export.DOMAIN, export.PLUGIN_NAME, ["q", "k", "v"], ["o"], nodes,
        [helper.make_opsetid("", opset)], ["mode", "plugin_version", "plugin_namespace"])
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.functions.append(function)
    return out


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_dynamic_axes_at_two_sequence_lengths(tmp_path, exporter):
    torch_model, path = _export(tmp_path, "wrapper", exporter)
    model = _with_reference_function(onnx.load(str(path)))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch, seq in ((1, 7), (3, 40)):
        fixed = onnx.ModelProto()
        fixed.CopyFrom(model)
        del fixed.graph.value_info[:]
        for value in (fixed.graph.input[0], fixed.graph.output[0]):
            dims = value.type.tensor_type.shape.dim
            dims[0].dim_value, dims[1].dim_value = batch, seq
        inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=True, data_prop=True)
        node = _plugin_node(inferred)
        shapes = {v.name: _dims(v) for v in inferred.graph.value_info}
        assert shapes[node.output[0]] == [batch, seq, HEADS, HEAD_DIM]
        assert _dims(inferred.graph.output[0]) == [batch, seq, HIDDEN]

        x = torch.randn(batch, seq, HIDDEN)
        with torch.no_grad():
            expected = torch_model(x).numpy()
        (actual,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_external_data(tmp_path):
    model = Block("wrapper").eval()
    path = tmp_path / "block.onnx"
    fattn.export_onnx(model, (torch.randn(2, 5, HIDDEN),), path, dynamic_shapes=_dynamic())
    data = [p for p in os.listdir(tmp_path) if p != "block.onnx"]
    assert data, "weights were not written beside the model"
    bare = onnx.load(str(path), load_external_data=False)
    # Small tensors may stay inline; the weight matrices must not.
    large = [t for t in bare.graph.initializer if math.prod(t.dims) >= HIDDEN * HIDDEN]
    assert len(large) == 2
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in large)
    onnx.checker.check_model(str(path), full_check=True)
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    qkv = model.qkv.weight.detach().numpy()
    assert any(np.array_equal(w, qkv) or np.array_equal(w, qkv.T) for w in weights.values())
