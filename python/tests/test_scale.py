"""One rule for the softmax scale, pushed through every layer that reads it.

The rule (libfattn's fattn_validate): any finite float, negative included; 0 selects
1/sqrt(head_dim). The same accepted and refused values go through the C API, the torch op, both
ONNX exporters, fattn-onnx prepare and the plugin's C core; every layer must accept exactly the
accepted ones and refuse the others naming the scale.
"""
import ctypes
import math
import os
import subprocess
import warnings

import onnx
import pytest
import torch
from onnx import helper

import fattn
from fattn import capi, export
from conftest import assert_close, reference

ACCEPTED = [-2.5, -0.125, 0.0, 0.3, 7.0]
# 1e39 overflows a 32-bit float: libfattn and the node's FLOAT attribute would see infinity.
REFUSED = [float("nan"), float("inf"), float("-inf"), 1e39]
B, S, H, D = 1, 9, 2, 16


def _inputs(gen):
    return [torch.randn(B, S, H, D, generator=gen) for _ in range(3)]


def _params(scale, tensors):
    q, k, v = tensors
    o = torch.empty_like(q)
    view = lambda t: capi.tensor(t.data_ptr(), S * H * D, H * D, D)  # noqa: E731
    return o, capi.make_params(batch=B, seqlen_q=S, seqlen_kv=S, heads_q=H, heads_kv=H,
                               head_dim=D, dtype=capi.DTYPE_F32, q=view(q), k=view(k),
                               v=view(v), o=view(o), scale=scale)


@pytest.mark.parametrize("scale", ACCEPTED + REFUSED)
def test_c_api(gen, scale):
    tensors = _inputs(gen)
    o, params = _params(scale, tensors)
    status = capi.validate(params)
    if scale in ACCEPTED:
        assert status == capi.OK, capi.last_error()
        capi.cpu_forward(params, 1)
        assert_close(o, reference(*tensors, scale=scale or None)[0], torch.float32)
    else:
        assert status == capi.ERR_INVALID_ARGUMENT and capi.last_error().startswith("scale (")


@pytest.mark.parametrize("scale", ACCEPTED + REFUSED)
def test_torch_op(gen, scale):
    q, k, v = _inputs(gen)
    if scale in ACCEPTED:
        out, _ = torch.ops.attn.flash_attn(q, k, v, 0, scale, False, False)
        assert_close(out, reference(q, k, v, scale=scale or None)[0], torch.float32)
        assert torch.equal(fattn.flash_attn_func(q, k, v, softmax_scale=scale), out)
    else:
        with pytest.raises(ValueError, match=r"scale \("):
            torch.ops.attn.flash_attn(q, k, v, 0, scale, False, False)
        with pytest.raises(ValueError, match=r"scale \("):
            fattn.flash_attn_func(q, k, v, softmax_scale=scale)


class _Flash(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, q, k, v):
        return fattn.flash_attn_func(q, k, v, softmax_scale=self.scale, causal=True)


def _export(scale, exporter, path, gen):
    args = tuple(_inputs(gen))
    if exporter == "dynamo":
        torch.onnx.export(_Flash(scale).eval(), args, dynamo=True).save(str(path))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(_Flash(scale).eval(), args, str(path), dynamo=False)


def _fattn_onnx():
    tool = os.environ.get("FATTN_ONNX")
    if not tool:
        pytest.skip("FATTN_ONNX not set (CTest sets it where fattn-onnx is built)")
    return tool


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
@pytest.mark.parametrize("scale", ACCEPTED)
def test_exporters_and_prepare_accept(tmp_path, gen, exporter, scale):
    path = tmp_path / "m.onnx"
    _export(scale, exporter, path, gen)
    node = next(n for n in onnx.load(str(path)).graph.node if n.op_type == export.PLUGIN_NAME)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    # 0 is the plugin's default, so it is left out of the node.
    assert ("scale" in attrs) == (scale != 0.0)
    if scale:
        assert attrs["scale"] == pytest.approx(scale, rel=1e-7)
    assert attrs["causal"] == 1
    tool = _fattn_onnx()
    r = subprocess.run([tool, "prepare", str(path), str(tmp_path / "p.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
@pytest.mark.parametrize("scale", REFUSED)
def test_exporters_refuse(tmp_path, gen, exporter, scale):
    # The dynamo exporter retries a failed trace and may word the failure its own way, but the
    # op's message is in the chain.
    with pytest.raises(Exception, match=r"scale \("):
        _export(scale, exporter, tmp_path / "m.onnx", gen)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("scale", REFUSED)
def test_prepare_refuses(tmp_path, scale):
    tool = _fattn_onnx()
    vi = lambda name: helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [B, S, H, D])  # noqa: E731
    node = helper.make_node(export.PLUGIN_NAME, ["q", "k", "v"], ["o"], domain=export.DOMAIN,
                            name="attn", mode=0, scale=scale, plugin_version="1",
                            plugin_namespace="")
    graph = helper.make_graph([node], "g", [vi("q"), vi("k"), vi("v")], [vi("o")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid(export.DOMAIN, 1)])
    src, dst = tmp_path / "m.onnx", tmp_path / "p.onnx"
    src.write_bytes(model.SerializeToString())
    r = subprocess.run([tool, "prepare", str(src), str(dst)], capture_output=True, text=True)
    assert r.returncode == 1 and "attribute scale" in r.stderr, r.stderr
    assert not dst.exists()


class _Field(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("data", ctypes.c_void_p), ("type", ctypes.c_int32),
                ("length", ctypes.c_int32)]


class _Config(ctypes.Structure):
    _fields_ = [("mode", ctypes.c_int32), ("causal", ctypes.c_int32), ("scale", ctypes.c_float),
                ("layout", ctypes.c_int32)]


def _plugin_core():
    path = os.environ.get("FATTN_PLUGIN_CORE_LIBRARY")
    if not path:
        pytest.skip("FATTN_PLUGIN_CORE_LIBRARY not set (CTest sets it to the build's plugin core)")
    lib = ctypes.CDLL(path)
    lib.fattn_plugin_config_from_fields.restype = ctypes.c_int
    lib.fattn_plugin_config_from_fields.argtypes = [ctypes.POINTER(_Field), ctypes.c_int32,
                                                    ctypes.POINTER(_Config), ctypes.c_char_p]
    return lib


@pytest.mark.parametrize("scale", ACCEPTED + REFUSED)
def test_plugin_fields(scale):
    lib = _plugin_core()
    value = ctypes.c_float(scale)
    field = _Field(b"scale", ctypes.cast(ctypes.byref(value), ctypes.c_void_p), 1, 1)  # FLOAT32
    config = _Config(7, 7, 7.0, 7)
    err = ctypes.create_string_buffer(512)
    status = lib.fattn_plugin_config_from_fields(ctypes.byref(field), 1, ctypes.byref(config), err)
    if scale in ACCEPTED:
        assert status == capi.OK, err.value
        assert config.scale == value.value and (config.mode, config.causal) == (0, 0)
    else:
        assert status == capi.ERR_INVALID_ARGUMENT and err.value.startswith(b"scale ("), err.value
        assert (config.mode, config.scale) == (7, 7.0), "a refused field wrote the config"


def test_zero_means_one_over_sqrt_d(gen):
    q, k, v = _inputs(gen)
    default, _ = torch.ops.attn.flash_attn(q, k, v, 0, 0.0, False, False)
    explicit, _ = torch.ops.attn.flash_attn(q, k, v, 0, 1 / math.sqrt(D), False, False)
    assert torch.equal(default, explicit)
