"""fattn.trt against a real TensorRT: engines with CustomAttnPlugin built ahead of time on this
machine (TensorRT-RTX builds without a GPU), from models exported with the torch op, prepared or
fused by fattn-onnx; the plan's serialised fattn_config checked field by field. Running an engine
needs a GPU that a TensorRT runtime supports; elsewhere those tests skip with the reason.

Needs: a TensorRT Python module (scripts/deps/trt-rtx.sh), FATTN_TRT_PLUGIN (the plugin library),
FATTN_ONNX (the fattn-onnx tool) and, for TensorRT-RTX, libtensorrt_rtx.so on LD_LIBRARY_PATH;
CTest sets all of them (python/CMakeLists.txt).
"""
import logging
import math
import os
import struct
import subprocess
import sys
import zlib

import onnx
import onnx.helper as oh
import pytest
import torch

import fattn
from fattn import trt as ftrt

try:
    TRT = ftrt.import_tensorrt()
except ftrt.TensorRTNotFound as err:
    pytest.skip(f"no TensorRT module: {err}", allow_module_level=True)

FATTN_ONNX = os.environ.get("FATTN_ONNX")
SEED_PROFILE = {"x": ((1, 15000, 4096), (1, 15708, 4096), (1, 16500, 4096))}
TORCH_TO_ONNX = {torch.float16: onnx.TensorProto.FLOAT16, torch.bfloat16: onnx.TensorProto.BFLOAT16,
                 torch.float32: onnx.TensorProto.FLOAT}


class Block(torch.nn.Module):
    """A DiT-style attention block: x [B, S, hidden] -> q/k/v projections -> fattn -> projection."""

    def __init__(self, hidden, heads, kv_heads, causal=False, scale=None, sdpa=False):
        super().__init__()
        self.heads, self.kv_heads, self.dim = heads, kv_heads, hidden // heads
        self.causal, self.scale, self.sdpa = causal, scale, sdpa
        self.q = torch.nn.Linear(hidden, hidden, bias=False)
        self.k = torch.nn.Linear(hidden, kv_heads * self.dim, bias=False)
        self.v = torch.nn.Linear(hidden, kv_heads * self.dim, bias=False)
        self.o = torch.nn.Linear(hidden, hidden, bias=False)

    def forward(self, x):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.heads, self.dim)
        k = self.k(x).view(b, s, self.kv_heads, self.dim)
        v = self.v(x).view(b, s, self.kv_heads, self.dim)
        if self.sdpa:
            a = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=self.causal,
                scale=self.scale, enable_gqa=self.heads != self.kv_heads).transpose(1, 2)
        elif self.causal or self.scale is not None:
            a = fattn.flash_attn_func(q, k, v, softmax_scale=self.scale, causal=self.causal)
        else:
            a = fattn.custom_attn(q, k, v)
        return self.o(a.reshape(b, s, self.heads * self.dim))


def export_block(tmp_path, block, dtype, seq=64, name="block"):
    """Exports the block with a dynamic sequence axis; returns the ONNX path."""
    block = block.to(dtype).eval()
    x = torch.randn(1, seq, block.q.in_features, dtype=dtype)
    path = tmp_path / f"{name}.onnx"
    seq_dim = torch.export.Dim("seq", min=1, max=32768)
    with torch.no_grad():
        if block.sdpa:
            program = torch.onnx.export(block, (x,), dynamo=True, dynamic_shapes=({1: seq_dim},),
                                        input_names=["x"], output_names=["y"])
            program.save(str(path), external_data=True)
        else:
            fattn.export_onnx(block, (x,), path, dynamic_shapes=({1: seq_dim},),
                              input_names=["x"], output_names=["y"])
    return path


def fattn_onnx(*args):
    if not FATTN_ONNX:
        pytest.skip("FATTN_ONNX is not set (the fattn-onnx tool was not built)")
    run = subprocess.run([FATTN_ONNX, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout + run.stderr


def prepare(path):
    out = path.with_name(path.stem + "_prepared.onnx")
    report = fattn_onnx("prepare", path, out, "--external-data")
    assert "plugin node" in report
    assert os.path.exists(str(out) + ".data") or any(
        init.data_location == onnx.TensorProto.EXTERNAL
        for init in onnx.load(str(out), load_external_data=False).graph.initializer)
    return out


def fattn_configs(plan):
    """Every serialised fattn_config in a plan: (mode, causal, scale, layout), CRC checked. A plan
    may hold a layer's fields more than once."""
    found, at = [], plan.find(b"FATP")
    while at >= 0:
        blob = plan[at:at + 28]
        version, size = struct.unpack_from("<HH", blob, 4)
        if version == 1 and size == 16:
            crc, = struct.unpack_from("<I", blob, 24)
            assert crc == zlib.crc32(blob[:24]), "fattn_config's CRC-32 does not match"
            mode, causal, scale, layout = struct.unpack_from("<iifi", blob, 8)
            found.append((mode, causal, scale, layout))
        at = plan.find(b"FATP", at + 4)
    return found


def small_profile(hidden):
    return {"x": ((1, 1, hidden), (1, 200, hidden), (1, 333, hidden))}


def test_seed_pipeline_builds(tmp_path, caplog):
    """The seed's block (hidden 4096, 32 heads of 128, bf16) with the seed's profile."""
    caplog.set_level(logging.INFO, logger="fattn.trt")
    path = prepare(export_block(tmp_path, Block(4096, 32, 32), torch.bfloat16, name="seed"))
    plan = ftrt.build_engine(path, [SEED_PROFILE], output=tmp_path / "seed.plan")
    assert (tmp_path / "seed.plan").read_bytes() == plan
    assert set(fattn_configs(plan)) == {(0, 0, 0.0, 0)}
    text = caplog.text
    assert "profile 0: x min (1, 15000, 4096) opt (1, 15708, 4096) max (1, 16500, 4096)" in text
    assert "built in" in text and "parsed in" in text


VARIANTS = {
    "causal": (dict(causal=True), torch.bfloat16, 4, 4, (0, 1, 0.0, 0)),
    "scale": (dict(scale=0.3), torch.float16, 4, 4, (0, 0, 0.3, 0)),
    "fp16": ({}, torch.float16, 4, 4, (0, 0, 0.0, 0)),
    "bf16_gqa": ({}, torch.bfloat16, 8, 2, (0, 0, 0.0, 0)),
    "causal_gqa_scale": (dict(causal=True, scale=0.125), torch.bfloat16, 8, 4, (0, 1, 0.125, 0)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_builds(tmp_path, variant):
    kwargs, dtype, heads, kv_heads, want = VARIANTS[variant]
    hidden = heads * 64
    path = prepare(export_block(tmp_path, Block(hidden, heads, kv_heads, **kwargs), dtype))
    plan = ftrt.build_engine(path, small_profile(hidden))
    (mode, causal, scale, layout), = set(fattn_configs(plan))
    assert (mode, causal, layout) == (want[0], want[1], want[3])
    assert math.isclose(scale, want[2], rel_tol=1e-6)


def plugin_model(path, dtype, shape, **attrs):
    """A graph of one CustomAttnPlugin node on inputs q, k, v of `shape` (seq axis dynamic)."""
    elem = TORCH_TO_ONNX[dtype]
    dims = (["b", shape[1], "s", shape[3]] if attrs.get("layout") == 1
            else ["b", "s", shape[2], shape[3]])
    inputs = [oh.make_tensor_value_info(n, elem, dims) for n in ("q", "k", "v")]
    node = oh.make_node("CustomAttnPlugin", ["q", "k", "v"], ["o"], domain="attn",
                        plugin_version="1", plugin_namespace="", mode=0, **attrs)
    graph = oh.make_graph([node], "attn", inputs, [oh.make_tensor_value_info("o", elem, dims)])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20), oh.make_opsetid("attn", 1)])
    onnx.save(model, str(path))
    return path


def qkv_profile(lo, opt, hi):
    return {n: (lo, opt, hi) for n in ("q", "k", "v")}


def test_layout1_builds(tmp_path):
    path = plugin_model(tmp_path / "bhsd.onnx", torch.float16, (1, 4, 0, 128), layout=1, causal=1)
    plan = ftrt.build_engine(path, qkv_profile((1, 4, 1, 128), (1, 4, 100, 128), (1, 4, 300, 128)))
    assert set(fattn_configs(plan)) == {(0, 1, 0.0, 1)}


def test_two_profiles_build(tmp_path):
    path = plugin_model(tmp_path / "two.onnx", torch.bfloat16, (1, 0, 4, 64))
    plan = ftrt.build_engine(path, [qkv_profile((1, 1, 4, 64), (1, 16, 4, 64), (1, 64, 4, 64)),
                                    qkv_profile((1, 64, 4, 64), (1, 512, 4, 64), (1, 2048, 4, 64))])
    assert set(fattn_configs(plan)) == {(0, 0, 0.0, 0)}


def test_sdpa_model_fused_builds(tmp_path):
    """A plain SDPA block, no fattn in it, rewritten by fattn-onnx fuse."""
    path = export_block(tmp_path, Block(256, 4, 4, causal=True, sdpa=True), torch.float16,
                        name="sdpa")
    fused = tmp_path / "sdpa_fused.onnx"
    report = fattn_onnx("fuse", path, fused, "--external-data")
    assert "CustomAttnPlugin" in report or "fused" in report
    plan = ftrt.build_engine(fused, small_profile(256))
    (mode, causal, scale, layout), = set(fattn_configs(plan))
    # The graph's own scale: torch's decomposition scales Q and K^T by sqrt(1/8) each, in fp16.
    assert (mode, causal) == (0, 1) and math.isclose(scale, 1 / 8, rel_tol=1e-3)


def test_unsupported_head_dim_fails_with_libfattns_reason(tmp_path, caplog):
    # 36: no multiple of 8 (the Hopper kernel's rule) and not one of the portable kernel's dims
    caplog.set_level(logging.ERROR, logger="fattn.trt")
    path = plugin_model(tmp_path / "d36.onnx", torch.float16, (1, 0, 4, 36))
    with pytest.raises(ftrt.EngineError) as err:
        ftrt.build_engine(path, qkv_profile((1, 1, 4, 36), (1, 16, 4, 36), (1, 64, 4, 36)))
    for text in (str(err.value), caplog.text):
        assert "no fattn GPU kernel for any GPU" in text and "head_dim (36)" in text


def test_int64_field_refused_by_name(capfd):
    import numpy as np

    ftrt.load_plugin(TRT)
    TRT.Builder(ftrt._logger(TRT).trt_logger)  # TensorRT's logger for the plugin's messages
    creator = TRT.get_plugin_registry().get_creator("CustomAttnPlugin", "1", "")
    fields = TRT.PluginFieldCollection([TRT.PluginField("mode", np.array([0], np.int64),
                                                        TRT.PluginFieldType.INT64)])
    assert creator.create_plugin("attn", fields, TRT.TensorRTPhase.BUILD) is None
    logged = ftrt._logger(TRT).take() + capfd.readouterr().err
    assert "field 'mode' has type INT64 (10); expected INT32" in logged


def test_missing_plugin_library(tmp_path, monkeypatch):
    with pytest.raises(ftrt.PluginLibraryNotFound, match="nowhere.so"):
        ftrt.build_engine(tmp_path / "m.onnx", small_profile(64),
                          plugin_library=str(tmp_path / "nowhere.so"))
    monkeypatch.delenv("FATTN_TRT_PLUGIN", raising=False)
    monkeypatch.setattr(ftrt, "_PACKAGE_DIR", str(tmp_path))
    monkeypatch.setattr(ftrt, "_REPO_ROOT", str(tmp_path))
    with pytest.raises(ftrt.PluginLibraryNotFound, match="libfattn_trt_plugin.so not found"):
        ftrt.find_plugin_library()


def test_missing_tensorrt_module(monkeypatch):
    for name in ftrt.MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ftrt.TensorRTNotFound) as err:
        ftrt.import_tensorrt()
    assert "tensorrt-rtx-cu13-bindings" in str(err.value) and "`tensorrt`" in str(err.value)
    with pytest.raises(ftrt.TensorRTNotFound, match="tensorrt-rtx-cu13-bindings"):
        ftrt.import_tensorrt("tensorrt_rtx_bindings")
    assert ftrt.main(["build", "m.onnx", "--shapes", "x:1x2x3", "-o", "m.plan"]) == 1


def test_cli_build(tmp_path):
    path = plugin_model(tmp_path / "cli.onnx", torch.bfloat16, (1, 0, 2, 128), causal=1)
    plan = tmp_path / "cli.plan"
    run = subprocess.run([sys.executable, "-m", "fattn.trt", "build", str(path), "--shapes",
                          "q:1x1x2x128,1x64x2x128,1x128x2x128;k:1x1x2x128,1x64x2x128,1x128x2x128;"
                          "v:1x1x2x128,1x64x2x128,1x128x2x128", "-o", str(plan)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "built in" in run.stderr and "profile 0: q min (1, 1, 2, 128)" in run.stderr
    assert set(fattn_configs(plan.read_bytes())) == {(0, 1, 0.0, 0)}


def test_parse_shapes():
    assert ftrt.parse_shapes("x:1x2x3,1x4x3,1x8x3") == {"x": ((1, 2, 3), (1, 4, 3), (1, 8, 3))}
    assert ftrt.parse_shapes("a:2x2;b:1x5,1x6,1x7") == {"a": ((2, 2),) * 3,
                                                       "b": ((1, 5), (1, 6), (1, 7))}
    for bad in ("x1x2", "x:1x2,1x3", "x:1xtwo"):
        with pytest.raises(ValueError):
            ftrt.parse_shapes(bad)


def engine_or_skip(plan):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: deserialising and running an engine needs a GPU")
    try:
        return ftrt.Engine(plan)
    except ftrt.EngineNotForThisGPU as err:
        pytest.skip(f"no TensorRT runtime here runs this GPU: {err}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_engine_runs_and_matches_torch(tmp_path, dtype):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: deserialising and running an engine needs a GPU")
    block = Block(256, 4, 2, causal=True)
    path = prepare(export_block(tmp_path, block, dtype))
    plan = ftrt.build_engine(path, small_profile(256))
    engine = engine_or_skip(plan)
    block = block.cuda()
    reference = Block(256, 4, 2, causal=True, sdpa=True).to(dtype).cuda()
    reference.load_state_dict(block.state_dict())
    buffers = {n: t.data_ptr() for n, t in engine._outputs.items()}
    for seq in (333, 1, 200, 17):
        x = torch.randn(1, seq, 256, device="cuda", dtype=dtype)
        y = engine(x=x)["y"]
        assert y.shape == (1, seq, 256) and y.data_ptr() == buffers["y"]
        with torch.no_grad():
            want = reference(x)
        err = ((y.float() - want.float()).norm() / want.float().norm()).item()
        assert err < 2e-2, f"seq {seq}: relative L2 {err}"
