"""fattn-onnx inspect / prepare / fuse on graphs built with the onnx package: what changes, what
is left alone and why, and how errors are reported. Every written model passes onnx's full
checker and strict shape inference (plugin nodes through a locally registered schema)."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fo_graphs
from fo_testlib import FIXTURES, attrs, check, ops, plugin_nodes, run_tool

TORCH_BLOCK = os.path.join(FIXTURES, "torch_attention_block.onnx")


def vi(name, shape, et=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, et, shape)


def legacy_plugin_model():
    """Plugin nodes as the seed's exporters wrote them: mode as INTS / STRING / FLOAT / mode_i,
    plugin_version as INT, no namespace, duplicate and empty names, a node in the default
    domain, nodes out of order, dead nodes, an unused initializer, a missing opset import for
    'attn' and an unused one for 'foo'."""
    shape = [1, 4, 2, 8]
    nodes = [
        helper.make_node("Add", ["a4", "bias"], ["y"], name="out"),
        helper.make_node("CustomAttnPlugin", ["a3", "k", "v"], ["a4"], domain="attn",
                         name="attn", mode=0.0, layout=[0]),
        helper.make_node("custom_attn", ["a2", "k", "v"], ["a3"], name="", mode_i=1,
                         causal=1.0, scale=1),
        helper.make_node("CustomAttnPlugin", ["a1", "k", "v"], ["a2"], domain="attn",
                         name="attn", mode="0", plugin_version="1", plugin_namespace=""),
        helper.make_node("CustomAttnPlugin", ["q", "k", "v"], ["a1"], domain="attn",
                         name="attn", mode=[1], plugin_version=1),
        helper.make_node("Relu", ["q"], ["dead1"], name="dead_relu"),
        helper.make_node("Add", ["dead1", "unused_w"], ["dead2"], name="dead_add"),
    ]
    inits = [numpy_helper.from_array(np.ones(8, np.float32), "bias"),
             numpy_helper.from_array(np.ones(8, np.float32), "unused_w")]
    graph = helper.make_graph(nodes, "g", [vi(n, shape) for n in "qkv"], [vi("y", shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("foo", 1)])
    model.ir_version = 10
    return model


def save(model, path):
    onnx.save(model, str(path))
    return path


def test_prepare_normalises_legacy_plugin_nodes(tmp_path):
    src = save(legacy_plugin_model(), tmp_path / "legacy.onnx")
    out, _ = run_tool("prepare", src, tmp_path / "prepared.onnx")
    print(out)
    m = check(tmp_path / "prepared.onnx")
    plugins = plugin_nodes(m)
    assert len(plugins) == 4
    by_output = {n.output[0]: n for n in plugins}
    modes = {o: attrs(by_output[o])["mode"] for o in ("a1", "a2", "a3", "a4")}
    assert modes == {"a1": 1, "a2": 0, "a3": 1, "a4": 0}
    for n in plugins:
        a = attrs(n)
        assert n.domain == "attn"
        assert a["plugin_version"] == b"1" and a["plugin_namespace"] == b""
        assert all(x.type == onnx.AttributeProto.INT for x in n.attribute if x.name == "mode")
        assert "mode_i" not in a
    a3 = attrs(by_output["a3"])
    assert a3["causal"] == 1 and a3["scale"] == 1.0
    assert attrs(by_output["a4"])["layout"] == 0
    names = [n.name for n in m.graph.node]
    assert all(names) and len(set(names)) == len(names)
    assert "Relu" not in ops(m) and len(m.graph.node) == 5
    assert [i.name for i in m.graph.initializer] == ["bias"]
    assert {(o.domain, o.version) for o in m.opset_import} == {("", 18), ("attn", 1)}
    defined = {"q", "k", "v", "bias"}
    for n in m.graph.node:
        assert set(n.input) <= defined, f"{n.name} runs before its inputs are computed"
        defined |= set(n.output)
    for text in ("mode INTS [1] -> mode INT 1", "mode STRING \"0\" -> mode INT 0",
                 "mode FLOAT 0 -> mode INT 0", "mode_i INT 1 -> mode INT 1",
                 "plugin_version INT 1 -> STRING \"1\"", "plugin_namespace set to \"\"",
                 "domain '' -> 'attn'", "(duplicate name)", "removed 2 node(s)",
                 "removed 1 unused initializer(s)", "reordered nodes topologically",
                 "added opset import 'attn' version 1", "removed opset import 'foo'"):
        assert text in out, text


def test_prepare_is_idempotent(tmp_path):
    src = save(legacy_plugin_model(), tmp_path / "legacy.onnx")
    run_tool("prepare", src, tmp_path / "p1.onnx")
    out, _ = run_tool("prepare", tmp_path / "p1.onnx", tmp_path / "p2.onnx")
    assert (tmp_path / "p1.onnx").read_bytes() == (tmp_path / "p2.onnx").read_bytes()
    assert "->" not in out and "renamed" not in out.replace("0 node(s) renamed", "")


@pytest.mark.parametrize("fixture", ["torch_attention_block.onnx", "torch_sdpa_opset23.onnx"])
def test_prepare_round_trips_clean_exports_byte_for_byte(tmp_path, fixture):
    """Nothing to change means nothing changed: value_info of initializers, metadata, field
    order and every other byte survive the protobuf-c round trip."""
    src = os.path.join(FIXTURES, fixture)
    run_tool("prepare", src, tmp_path / "p.onnx")
    assert (tmp_path / "p.onnx").read_bytes() == open(src, "rb").read()


def test_prepare_in_place(tmp_path):
    src = save(legacy_plugin_model(), tmp_path / "m.onnx")
    run_tool("prepare", src, src)
    check(src)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"], "temporary files left behind"


def bad_plugin_model(**node_kwargs):
    n_inputs = node_kwargs.pop("inputs", ["q", "k", "v"])
    node = helper.make_node("CustomAttnPlugin", n_inputs, ["o"], domain="attn",
                            name="bad_node", **node_kwargs)
    graph = helper.make_graph([node], "g", [vi(n, [1, 4, 2, 8]) for n in "qkv"],
                              [vi("o", [1, 4, 2, 8])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                   helper.make_opsetid("attn", 1)])


@pytest.mark.parametrize("kwargs,message", [
    (dict(mode=2), "attribute mode is 2; expected 0 or 1"),
    (dict(mode=[0, 1]), "attribute mode: INTS (2 values) is not one integer"),
    (dict(mode="fast"), "attribute mode: STRING \"fast\" is not one integer"),
    (dict(mode=0.5), "attribute mode: FLOAT 0.5 is not one integer"),
    (dict(mode=0, causal=3), "attribute causal is 3"),
    (dict(mode=0, scale=float("nan")), "attribute scale"),
    (dict(mode=0, inputs=["q", "k"]), "takes exactly 3 inputs"),
])
def test_prepare_rejects_bad_plugin_nodes(tmp_path, kwargs, message):
    src = save(bad_plugin_model(**kwargs), tmp_path / "bad.onnx")
    dst = tmp_path / "out.onnx"
    dst.write_text("sentinel")
    _, err = run_tool("prepare", src, dst, expect=1)
    assert str(src) in err and "'bad_node'" in err and message in err, err
    assert dst.read_text() == "sentinel", "the existing output was touched"
    assert sorted(os.listdir(tmp_path)) == ["bad.onnx", "out.onnx"]


def test_errors_name_file_node_and_reason(tmp_path):
    cyc = helper.make_graph(
        [helper.make_node("Relu", ["b"], ["a"], name="first"),
         helper.make_node("Relu", ["a"], ["b"], name="second"),
         helper.make_node("Identity", ["a"], ["o"], name="out")],
        "g", [], [vi("o", [1])])
    src = save(helper.make_model(cyc, opset_imports=[helper.make_opsetid("", 18)]),
               tmp_path / "cycle.onnx")
    _, err = run_tool("prepare", src, tmp_path / "o.onnx", expect=1)
    assert "cycle.onnx" in err and "part of a cycle" in err and "(Relu)" in err
    assert not (tmp_path / "o.onnx").exists()

    undefined = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["o"], name="r")],
                                  "g", [], [vi("o", [1])])
    src = save(helper.make_model(undefined, opset_imports=[helper.make_opsetid("", 18)]),
               tmp_path / "undef.onnx")
    _, err = run_tool("fuse", src, tmp_path / "o.onnx", expect=1)
    assert "undef.onnx: node 'r' (Relu) reads 'nowhere'" in err

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(bytes(range(256)) * 4)
    _, err = run_tool("inspect", junk, expect=1)
    assert "junk.onnx: not an ONNX model" in err

    _, err = run_tool("inspect", tmp_path / "missing.onnx", expect=1)
    assert "missing.onnx: cannot open" in err

    ok = save(fo_graphs.decomposition(), tmp_path / "ok.onnx")
    _, err = run_tool("fuse", ok, tmp_path / "no" / "such" / "dir.onnx", expect=1)
    assert "dir.onnx: cannot create a temporary file" in err


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["inspect"], ["fuse", "a", "b", "--mode", "2"],
                                  ["prepare", "a", "b", "--bogus"], ["prepare", "a"],
                                  ["prepare", "a", "b", "--external-data-threshold", "x"]])
def test_usage_errors(args):
    _, err = run_tool(*args, expect=2)
    assert "usage:" in err


def test_inspect_torch_block():
    out, _ = run_tool("inspect", TORCH_BLOCK)
    print(out)
    for text in ("opsets: ai.onnx=20", "'x' float [1, 8, 32]", "'y' float [1, 8, 32]",
                 "Softmax                      1", "attention sites: 1", "decomposition:",
                 "scale 0.25, causal 1", "fusable: yes: layout 0 (BSHD), 0 Transpose(s)"):
        assert text in out, text


def test_inspect_symbolic_dims_and_plugin_nodes(tmp_path):
    model = fo_graphs.decomposition()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    src = save(model, tmp_path / "sym.onnx")
    out, _ = run_tool("inspect", src)
    assert "'q' float [batch, 5, 2, 8]" in out
    run_tool("fuse", src, tmp_path / "fused.onnx", "--mode", "1")
    out, _ = run_tool("inspect", tmp_path / "fused.onnx")
    assert "plugin node: CustomAttnPlugin" in out and "mode=INT 1" in out
    assert "attn::CustomAttnPlugin       1" in out


NOT_FUSED = [
    ("top_left_mask", lambda: fo_graphs.decomposition(sq=3, skv=6, mask="topleft"),
     "top-left causal with Sq (3) != Skv (6)"),
    ("additive_bias", lambda: fo_graphs.decomposition(mask="bias"), "neither 0 nor a large"),
    ("runtime_mask", lambda: fo_graphs.decomposition(mask="runtime"),
     "neither a constant nor a causal mask"),
    ("probs_used", lambda: fo_graphs.decomposition(extra_prob_use=True), "graph output"),
    ("runtime_mask_cross_lengths",
     lambda: fo_graphs.runtime_mask_decomposition(sq="sq", skv="skv"),
     "neither a constant nor a causal mask built from the sequence length"),
    ("runtime_where_cross_lengths",
     lambda: fo_graphs.runtime_mask_decomposition(sq="sq", skv="skv", where=True),
     "condition 'above' is neither a constant nor a causal mask"),
    ("runtime_mask_shifted_diagonal", lambda: fo_graphs.runtime_mask_decomposition(trilu_k=1),
     "neither a constant nor a causal mask built from the sequence length"),
    ("attention_mask", lambda: fo_graphs.onnx_attention(mask=True), "input attn_mask"),
    ("attention_3d", lambda: fo_graphs.onnx_attention(three_d=True), "3-D inputs"),
    ("attention_softcap", lambda: fo_graphs.onnx_attention(softcap=5.0), "softcap 5"),
    ("attention_causal_sq_ne_skv", lambda: fo_graphs.onnx_attention(causal=1, sq=3, skv=7),
     "top-left aligned"),
]


@pytest.mark.parametrize("case", NOT_FUSED, ids=[c[0] for c in NOT_FUSED])
def test_sites_left_alone_with_reason(tmp_path, case):
    _, build, reason = case
    model = build()
    src = save(model, tmp_path / "in.onnx")
    out, _ = run_tool("fuse", src, tmp_path / "out.onnx")
    print(out)
    assert "left alone" in out and reason in out
    assert "0 attention site(s) fused" in out
    fused = check(tmp_path / "out.onnx")
    assert not plugin_nodes(fused)
    assert len(fused.graph.node) == len(model.graph.node)
    info, _ = run_tool("inspect", src)
    assert "fusable: no:" in info and reason in info


def test_fuse_mode_and_two_sites(tmp_path):
    """Two attention layers in one graph (the second reading the first's output), fused with
    --mode 1; names stay unique and the graph checks."""
    a = fo_graphs.decomposition(mask="causal_add")
    g = a.graph
    second = onnx.helper.make_graph([], "x", [], [])
    rename = {}
    for n in list(g.node):
        m = onnx.NodeProto()
        m.CopyFrom(n)
        m.name = "l2_" + n.name
        m.input[:] = [("o" if i == "q" else rename.setdefault(i, "l2_" + i) if i not in "kv"
                       else i) for i in n.input]
        m.output[:] = [rename.setdefault(o, "l2_" + o) for o in n.output]
        second.node.append(m)
    for t in g.initializer:
        c = onnx.TensorProto()
        c.CopyFrom(t)
        c.name = rename.get(t.name, "l2_" + t.name)
        second.initializer.append(c)
    g.node.extend(second.node)
    g.initializer.extend(second.initializer)
    g.output[0].name = "l2_o"
    src = save(a, tmp_path / "two.onnx")
    out, _ = run_tool("fuse", src, tmp_path / "fused.onnx", "--mode", "1")
    print(out)
    fused = check(tmp_path / "fused.onnx")
    plugins = plugin_nodes(fused)
    assert len(plugins) == 2 and all(attrs(p)["mode"] == 1 for p in plugins)
    assert "2 attention site(s) fused" in out
    assert set(ops(fused)) == {"CustomAttnPlugin"}
