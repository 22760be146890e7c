"""Numeric proof of `fattn-onnx fuse`: the original graph run by onnxruntime on the CPU against
the fused graph, whose CustomAttnPlugin node is computed by libfattn's CPU forward (through
python/fattn/capi.py) and whose remaining layout ops run in onnx's reference evaluator. Inputs
are fresh random numbers (seed printed); both outputs are also held to a float64 reference."""
import os

import numpy as np
import onnx
import pytest

import fo_graphs
from fo_testlib import (FIXTURES, attrs, check, fresh_rng, ops, plugin_nodes,
                        reference_attention, rel_l2, run_fused, run_ort, run_tool)

# fp32: libfattn accumulates in fp32 exactly like the graph; fp16: one rounding of P and O.
BOUND = {np.dtype(np.float32): 1e-4, np.dtype(np.float16): 5e-3}

# id, decomposition() arguments, expected layout, inserted Transposes, causal
DECOMPOSITIONS = [
    ("bshd_div_causal", dict(mask="causal_add"), 0, 0, 1),
    ("bshd_two_step_k_mul", dict(k_form="two_step", scale_form="mul"), 0, 0, 0),
    ("bhsd_no_out_transpose", dict(layout="bhsd", out_transpose=False), 1, 0, 0),
    ("bhsd_out_transpose", dict(layout="bhsd"), 1, 0, 0),
    ("pre_scaled_qk_where", dict(scale_form="pre_qk", mask="causal_where"), 0, 0, 1),
    ("where_fill_first_sq_lt_skv", dict(sq=3, skv=7, mask="causal_where_fill_first"), 0, 0, 1),
    ("causal_sq_ne_skv_finite_mask", dict(sq=4, skv=9, mask="causal_add", mask_value=-1e9),
     0, 0, 1),
    ("mask_before_scale", dict(mask="mask_before_scale"), 0, 0, 1),
    ("k_given_transposed", dict(layout="kt"), 0, 1, 0),
    ("mqa", dict(hq=4, hkv=1, mask="causal_add"), 0, 0, 1),
    ("empty_mask", dict(mask="zeros"), 0, 0, 0),
    ("no_scale", dict(scale_form="none"), 0, 0, 0),
    ("seqlen_q_1", dict(sq=1, skv=6, mask="causal_add"), 0, 0, 0),
    ("odd_sizes", dict(b=1, sq=17, skv=33, hq=3, hkv=3, d=16, mask="causal_add"), 0, 0, 1),
    ("fp16_causal", dict(dtype=np.float16, mask="causal_add", d=16), 0, 0, 1),
    ("fp16_float_softmax", dict(dtype=np.float16, mask="causal_add", float_softmax=True), 0, 0,
     1),
    ("opset_11", dict(opset=11, mask="causal_add"), 0, 0, 1),
]


def canonical_inputs(feeds, layout):
    """q, k, v as [B,H,S,D] from a decomposition's graph inputs."""
    q, k, v = feeds["q"], feeds["k"], feeds["v"]
    if layout == "bhsd":
        return q, k, v
    q, v = q.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    k = k.transpose(0, 1, 3, 2) if layout == "kt" else k.transpose(0, 2, 1, 3)
    return q, k, v


def fuse_and_compare(tmp_path, model, feeds, reference, name):
    src = tmp_path / "in.onnx"
    dst = tmp_path / "fused.onnx"
    onnx.save(model, src)
    check(model)
    out, _ = run_tool("fuse", src, dst)
    print(out)
    fused = check(dst)
    expected = run_ort(model, feeds)[0]
    got = run_fused(fused, feeds)[0]
    bound = BOUND[np.dtype(expected.dtype)]
    err_ort = rel_l2(got, expected)
    err_ref = rel_l2(got, reference)
    err_ort_ref = rel_l2(expected, reference)
    print(f"{name}: rel L2 fused vs onnxruntime {err_ort:.2e}, fused vs float64 {err_ref:.2e}, "
          f"onnxruntime vs float64 {err_ort_ref:.2e} (bound {bound:g})")
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert err_ort <= bound and err_ref <= bound
    return fused


@pytest.mark.parametrize("case", DECOMPOSITIONS, ids=[c[0] for c in DECOMPOSITIONS])
def test_decomposition_fused_matches_onnxruntime(tmp_path, case):
    name, kwargs, layout, inserted, causal = case
    rng = fresh_rng(name)
    model = fo_graphs.decomposition(**kwargs)
    feeds = fo_graphs.random_inputs(model, rng)
    d = kwargs.get("d", 8)
    scale = 1.0 if kwargs.get("scale_form") == "none" else 1.0 / np.sqrt(d)
    q, k, v = canonical_inputs(feeds, kwargs.get("layout", "bshd"))
    ref = reference_attention(q, k, v, causal, scale, layout=1)
    if kwargs.get("out_transpose", True):
        ref = ref.transpose(0, 2, 1, 3)
    fused = fuse_and_compare(tmp_path, model, feeds, ref, name)
    (node,) = plugin_nodes(fused)
    a = attrs(node)
    assert a["layout"] == layout and a["causal"] == causal and a["mode"] == 0
    assert a["plugin_version"] == b"1" and a["plugin_namespace"] == b""
    # the graph's own constants, rounded to its dtype, set the scale
    rounding = 1e-6 if np.dtype(kwargs.get("dtype", np.float32)) == np.float32 else 2e-3
    assert abs(a["scale"] - scale) <= rounding * scale
    assert not {"MatMul", "Softmax", "Add", "Where", "Div", "Mul", "Cast"} & set(ops(fused))
    assert sum(n.name.startswith("fattn_attention_") and n.op_type == "Transpose"
               for n in fused.graph.node) == inserted


ATTENTIONS = [
    ("gqa", dict(hq=4, hkv=2), 1, 0, 0),
    ("causal_explicit_scale", dict(causal=1, scale=0.3), 1, 0, 1),
    ("bshd_transposes", dict(layout="bshd", causal=1), 0, 0, 1),
    ("mqa", dict(hq=4, hkv=1, sq=6, skv=11), 1, 0, 0),
]


@pytest.mark.parametrize("case", ATTENTIONS, ids=[c[0] for c in ATTENTIONS])
def test_onnx_attention_fused_matches_onnxruntime(tmp_path, case):
    name, kwargs, layout, inserted, causal = case
    rng = fresh_rng(name)
    model = fo_graphs.onnx_attention(**kwargs)
    feeds = fo_graphs.random_inputs(model, rng)
    q, k, v = feeds["q"], feeds["k"], feeds["v"]
    if kwargs.get("layout") == "bshd":
        q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    ref = reference_attention(q, k, v, causal, kwargs.get("scale"), layout=1)
    if kwargs.get("layout") == "bshd":
        ref = ref.transpose(0, 2, 1, 3)
    fused = fuse_and_compare(tmp_path, model, feeds, ref, name)
    (node,) = plugin_nodes(fused)
    a = attrs(node)
    assert a["layout"] == layout and a["causal"] == causal
    assert ("scale" in a) == ("scale" in kwargs)
    assert "Attention" not in ops(fused)
    assert sum(n.op_type == "Transpose" for n in fused.graph.node) == inserted


@pytest.mark.parametrize("where", [False, True], ids=["add", "where"])
def test_runtime_causal_mask_fused(tmp_path, where):
    """A causal mask computed from Shape(q) and Shape(k) whose lengths share one symbolic dim,
    added to the scores or applied with Where: fused as causal, checked at two lengths."""
    model = fo_graphs.runtime_mask_decomposition(where=where)
    src = tmp_path / "in.onnx"
    onnx.save(model, src)
    check(model)
    run_tool("fuse", src, tmp_path / "fused.onnx")
    fused = check(tmp_path / "fused.onnx")
    (node,) = plugin_nodes(fused)
    assert attrs(node)["causal"] == 1 and "Trilu" not in ops(fused)
    rng = fresh_rng("runtime_mask")
    for seq in (1, 9):
        feeds = {n: rng.standard_normal((2, seq, 2, 8)).astype(np.float32) for n in "qkv"}
        expected = run_ort(model, feeds)[0]
        got = run_fused(fused, feeds)[0]
        ref = reference_attention(feeds["q"], feeds["k"], feeds["v"], 1, 1 / np.sqrt(8), 0)
        assert rel_l2(got, expected) <= 1e-4 and rel_l2(got, ref) <= 1e-4


@pytest.mark.parametrize("correct", [True, False], ids=["transpose_chain", "look_alike"])
def test_folded_k_transpose_only_when_proven(tmp_path, correct):
    """Reshape -> Transpose(0,2,1) -> Reshape is taken as K^T only when its shape vectors prove
    it; a look-alike (valid only because S == D) gets an explicit Transpose instead. Both must
    match onnxruntime."""
    model = fo_graphs.folded_kt_decomposition(correct)
    src = tmp_path / "in.onnx"
    onnx.save(model, src)
    check(model)
    run_tool("fuse", src, tmp_path / "fused.onnx")
    fused = check(tmp_path / "fused.onnx")
    (node,) = plugin_nodes(fused)
    assert node.input[1] == "k" if correct else node.input[1] != "k"
    assert ("Reshape" in ops(fused)) != correct
    rng = fresh_rng("folded_kt")
    feeds = {n: rng.standard_normal((2, 2, 8, 8)).astype(np.float32) for n in "qkv"}
    err = rel_l2(run_fused(fused, feeds)[0], run_ort(model, feeds)[0])
    print(f"folded K^T ({'correct' if correct else 'look-alike'}): rel L2 {err:.2e}")
    assert err <= 1e-4


TORCH_FIXTURES = [("torch_attention_block.onnx", (1, 8)),
                  ("torch_sdpa_opset23.onnx", (1, 8)),
                  ("torch_sdpa_dynamic_opset20.onnx", (3, 13)),
                  ("torch_sdpa_dynamic_opset20.onnx", (1, 1))]


@pytest.mark.parametrize("fixture,batch_seq", TORCH_FIXTURES,
                         ids=[f"{f[:-5]}-{b}x{s}" for f, (b, s) in TORCH_FIXTURES])
def test_torch_export_fused(tmp_path, fixture, batch_seq):
    """The torch-exported blocks (make_torch_fixtures.py): one causal site each, fused into a
    BSHD plugin node fed straight from the head Reshapes, no Transpose, Softmax or mask left;
    same output as onnxruntime. The dynamic export runs at lengths it was not traced with (its
    causal mask is computed from the sequence length at run time)."""
    rng = fresh_rng(fixture)
    path = os.path.join(FIXTURES, fixture)
    model = onnx.load(path)
    x = rng.standard_normal((*batch_seq, 32)).astype(np.float32)
    dst = tmp_path / "fused.onnx"
    out, _ = run_tool("fuse", path, dst)
    print(out)
    fused = check(dst)
    (node,) = plugin_nodes(fused)
    a = attrs(node)
    assert a["layout"] == 0 and a["causal"] == 1
    assert not {"Softmax", "Attention", "Transpose", "Trilu", "Where"} & set(ops(fused))
    expected = run_ort(model, {"x": x})[0]
    got = run_fused(fused, {"x": x})[0]
    err = rel_l2(got, expected)
    print(f"{fixture} x{x.shape}: rel L2 fused vs onnxruntime {err:.2e}")
    assert err <= 1e-4
