"""Writes the fuzzer's seed corpus (committed in corpus/): small models that reach every
matcher and pass — decompositions with each mask and scale form, ONNX Attention in fused and
refused forms, legacy plugin nodes, external data references, a subgraph."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import fo_graphs  # noqa: E402
from test_cli import legacy_plugin_model  # noqa: E402


def subgraph_model():
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"], name="relu")], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="neg")], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="if")],
        "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def external_model():
    model = fo_graphs.decomposition(mask="causal_add")
    t = model.graph.initializer[-1]
    t.ClearField("raw_data")
    for k, v in (("location", "data.bin"), ("offset", "0"), ("length", str(5 * 5 * 4))):
        t.external_data.add(key=k, value=v)
    t.data_location = TensorProto.EXTERNAL
    return model


def main():
    out = os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    models = {
        "decomp_causal_add": fo_graphs.decomposition(mask="causal_add"),
        "decomp_where_pre_qk": fo_graphs.decomposition(mask="causal_where", scale_form="pre_qk"),
        "decomp_bhsd": fo_graphs.decomposition(layout="bhsd", out_transpose=False),
        "decomp_kt_topleft": fo_graphs.decomposition(layout="kt", sq=3, skv=4, mask="topleft"),
        "decomp_fp16_bias": fo_graphs.decomposition(dtype=np.float16, mask="bias"),
        "attention_gqa_causal": fo_graphs.onnx_attention(causal=1, layout="bshd"),
        "attention_mask": fo_graphs.onnx_attention(mask=True),
        "attention_3d": fo_graphs.onnx_attention(three_d=True),
        "runtime_causal_mask": fo_graphs.runtime_mask_decomposition(),
        "runtime_mask_cross": fo_graphs.runtime_mask_decomposition(sq="a", skv="b", trilu_k=1),
        "legacy_plugins": legacy_plugin_model(),
        "external_ref": external_model(),
        "subgraph": subgraph_model(),
    }
    for name, model in models.items():
        path = os.path.join(out, name + ".onnx")
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
        print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
