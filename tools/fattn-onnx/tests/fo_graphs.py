"""Attention graphs built with the onnx package: the decompositions exporters produce (head
Transposes, scale before or after QK, causal masks as Add or Where) and ONNX Attention."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NP_TO_ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16}


def _const(name, value, dtype):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def causal_allowed(sq, skv, align="bottom_right"):
    i = np.arange(sq)[:, None]
    t = np.arange(skv)[None, :]
    return t <= (i + skv - sq if align == "bottom_right" else i)


def decomposition(b=2, sq=5, skv=5, hq=2, hkv=2, d=8, layout="bshd", k_form="direct",
                  scale_form="div", mask=None, out_transpose=True, dtype=np.float32,
                  opset=18, mask_value=-np.inf, extra_prob_use=False, float_softmax=False):
    """MatMul(Q, K^T) -> scale -> [mask] -> Softmax -> MatMul(., V) with the head layout ops.

    layout: "bshd" inputs [B,S,H,D] transposed into heads, "bhsd" inputs [B,H,S,D],
            "kt" q/v BSHD and K given pre-transposed as [B,H,D,S].
    k_form: "direct" one Transpose(0,2,3,1); "two_step" Transpose(0,2,1,3) then (0,1,3,2).
    scale_form: "div" scores / sqrt(d), "mul" scale * scores, "pre_qk" q and k^T each times
            sqrt(scale) (torch's SDPA decomposition), "none".
    mask: None, "causal_add", "causal_where", "causal_where_fill_first", "topleft", "bias",
          "runtime", "zeros", "mask_before_scale".
    float_softmax: Cast(float) -> Softmax -> Cast(back), as mixed-precision exports run it.
    """
    dt = np.dtype(dtype)
    et = NP_TO_ONNX[dt]
    nodes, inits, inputs = [], [], []
    scale = 1.0 / np.sqrt(d)

    def tr(src, perm, out):
        nodes.append(helper.make_node("Transpose", [src], [out], perm=perm, name=f"t_{out}"))
        return out

    if layout == "bhsd":
        inputs += [helper.make_tensor_value_info("q", et, [b, hq, sq, d]),
                   helper.make_tensor_value_info("k", et, [b, hkv, skv, d]),
                   helper.make_tensor_value_info("v", et, [b, hkv, skv, d])]
        qh, vh = "q", "v"
        kt = tr("k", [0, 1, 3, 2], "kt")
    else:
        inputs += [helper.make_tensor_value_info("q", et, [b, sq, hq, d]),
                   helper.make_tensor_value_info("v", et, [b, skv, hkv, d])]
        qh = tr("q", [0, 2, 1, 3], "qh")
        vh = tr("v", [0, 2, 1, 3], "vh")
        if layout == "kt":
            inputs.append(helper.make_tensor_value_info("k", et, [b, hkv, d, skv]))
            kt = "k"
        else:
            inputs.append(helper.make_tensor_value_info("k", et, [b, skv, hkv, d]))
            if k_form == "direct":
                kt = tr("k", [0, 2, 3, 1], "kt")
            else:
                kh = tr("k", [0, 2, 1, 3], "kh")
                kt = tr(kh, [0, 1, 3, 2], "kt")
    if scale_form == "pre_qk":
        inits.append(_const("sqrt_scale", np.sqrt(scale), dt))
        nodes.append(helper.make_node("Mul", [qh, "sqrt_scale"], ["q_scaled"], name="q_scale"))
        nodes.append(helper.make_node("Mul", [kt, "sqrt_scale"], ["kt_scaled"], name="k_scale"))
        qh, kt = "q_scaled", "kt_scaled"
    nodes.append(helper.make_node("MatMul", [qh, kt], ["scores"], name="qk"))
    cur = "scores"

    def apply_scale(cur):
        if scale_form == "div":
            inits.append(_const("sqrt_d", np.sqrt(d), dt))
            nodes.append(helper.make_node("Div", [cur, "sqrt_d"], ["scaled"], name="scale"))
            return "scaled"
        if scale_form == "mul":
            inits.append(_const("scale_c", scale, dt))
            nodes.append(helper.make_node("Mul", ["scale_c", cur], ["scaled"], name="scale"))
            return "scaled"
        return cur

    if mask != "mask_before_scale":
        cur = apply_scale(cur)
    allowed = causal_allowed(sq, skv)
    if mask in ("causal_add", "mask_before_scale", "topleft", "zeros", "bias"):
        if mask == "topleft":
            allowed = causal_allowed(sq, skv, "top_left")
        if mask == "zeros":
            allowed = np.ones((sq, skv), dtype=bool)
        m = np.where(allowed, 0.0, mask_value).astype(dt)
        if mask == "bias":
            m = np.random.default_rng(0).standard_normal((sq, skv)).astype(dt)
        inits.append(_const("mask", m, dt))
        nodes.append(helper.make_node("Add", [cur, "mask"], ["masked"], name="mask_add"))
        cur = "masked"
    elif mask in ("causal_where", "causal_where_fill_first"):
        inits.append(_const("fill", mask_value, dt))
        if mask == "causal_where":
            inits.append(_const("cond", allowed.reshape(1, 1, sq, skv), np.bool_))
            nodes.append(helper.make_node("Where", ["cond", cur, "fill"], ["masked"],
                                          name="mask_where"))
        else:
            inits.append(_const("cond", ~allowed, np.bool_))
            nodes.append(helper.make_node("Where", ["cond", "fill", cur], ["masked"],
                                          name="mask_where"))
        cur = "masked"
    elif mask == "runtime":
        inputs.append(helper.make_tensor_value_info("mask_in", et, [sq, skv]))
        nodes.append(helper.make_node("Add", [cur, "mask_in"], ["masked"], name="mask_add"))
        cur = "masked"
    if mask == "mask_before_scale":
        cur = apply_scale(cur)
    probs = "probs"
    if float_softmax:
        nodes.append(helper.make_node("Cast", [cur], ["scores_f32"], to=TensorProto.FLOAT,
                                      name="up"))
        cur, probs = "scores_f32", "probs_back"
    nodes.append(helper.make_node("Softmax", [cur], ["probs"], axis=-1, name="softmax"))
    if float_softmax:
        nodes.append(helper.make_node("Cast", ["probs"], [probs], to=et, name="down"))
    nodes.append(helper.make_node("MatMul", [probs, vh], ["ctx"], name="pv"))
    outputs = []
    if out_transpose:
        tr("ctx", [0, 2, 1, 3], "o")
        outputs.append(helper.make_tensor_value_info("o", et, [b, sq, hq, d]))
    else:
        nodes.append(helper.make_node("Identity", ["ctx"], ["o"], name="out"))
        outputs.append(helper.make_tensor_value_info("o", et, [b, hq, sq, d]))
    if extra_prob_use:
        outputs.append(helper.make_tensor_value_info("probs", et, [b, hq, sq, skv]))
    graph = helper.make_graph(nodes, "attention", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def onnx_attention(b=2, sq=5, skv=5, hq=4, hkv=2, d=8, causal=0, scale=None, layout="bhsd",
                   dtype=np.float32, mask=False, three_d=False, softcap=None):
    """ONNX Attention (opset 23), 4-D BHSD, optionally fed from BSHD via Transposes."""
    et = NP_TO_ONNX[np.dtype(dtype)]
    nodes, inputs, inits = [], [], []
    kw = {}
    if causal:
        kw["is_causal"] = 1
    if scale is not None:
        kw["scale"] = float(scale)
    if softcap is not None:
        kw["softcap"] = float(softcap)
    if three_d:
        kw["q_num_heads"] = hq
        kw["kv_num_heads"] = hkv
        inputs = [helper.make_tensor_value_info("q", et, [b, sq, hq * d]),
                  helper.make_tensor_value_info("k", et, [b, skv, hkv * d]),
                  helper.make_tensor_value_info("v", et, [b, skv, hkv * d])]
        names = ["q", "k", "v"]
        out_shape = [b, sq, hq * d]
    elif layout == "bshd":
        inputs = [helper.make_tensor_value_info("q", et, [b, sq, hq, d]),
                  helper.make_tensor_value_info("k", et, [b, skv, hkv, d]),
                  helper.make_tensor_value_info("v", et, [b, skv, hkv, d])]
        names = []
        for n in "qkv":
            nodes.append(helper.make_node("Transpose", [n], [n + "h"], perm=[0, 2, 1, 3],
                                          name="t_" + n))
            names.append(n + "h")
        out_shape = [b, sq, hq, d]
    else:
        inputs = [helper.make_tensor_value_info("q", et, [b, hq, sq, d]),
                  helper.make_tensor_value_info("k", et, [b, hkv, skv, d]),
                  helper.make_tensor_value_info("v", et, [b, hkv, skv, d])]
        names = ["q", "k", "v"]
        out_shape = [b, hq, sq, d]
    if mask:
        inits.append(_const("mask", np.zeros((sq, skv)), dtype))
        names.append("mask")
    y = "y" if layout == "bshd" and not three_d else "o"
    nodes.append(helper.make_node("Attention", names, [y], name="attention", **kw))
    if y == "y":
        nodes.append(helper.make_node("Transpose", ["y"], ["o"], perm=[0, 2, 1, 3], name="t_o"))
    outputs = [helper.make_tensor_value_info("o", et, out_shape)]
    graph = helper.make_graph(nodes, "attention", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 11
    return model


def random_inputs(model, rng):
    feeds = {}
    for i in model.graph.input:
        t = i.type.tensor_type
        shape = [d.dim_value for d in t.shape.dim]
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        feeds[i.name] = rng.standard_normal(shape).astype(dt)
    return feeds


def runtime_mask_decomposition(sq="seq", skv="seq", trilu_k=0, b=2, h=2, d=8, where=False):
    """BSHD attention whose causal mask is built at run time the way torch's SDPA export builds
    it: Shape -> Slice (length) -> Concat -> Expand(1) -> Trilu -> Equal(0) -> Where(-big, 0),
    over [Sq, Skv] taken from q's and k's shapes (symbolic dims sq and skv). where=True applies
    it as masked_fill does instead: Where(above the diagonal, -inf, scores)."""
    model = decomposition(b=b, hq=h, hkv=h, d=d)
    g = model.graph
    for vi_, dim in zip(g.input, (sq, skv, skv)):
        vi_.type.tensor_type.shape.dim[1].dim_param = dim
    g.output[0].type.tensor_type.shape.dim[1].dim_param = sq
    consts = [_const("one", 1.0, np.float32), _const("zero", 0.0, np.float32),
              _const("big", -3.4e38, np.float32), _const("s1", [1], np.int64),
              _const("s2", [2], np.int64)]
    if trilu_k:
        consts.append(_const("diag", trilu_k, np.int64))
    g.initializer.extend(consts)
    nodes = [helper.make_node("Shape", ["q"], ["q_shape"], name="q_shape"),
             helper.make_node("Shape", ["k"], ["k_shape"], name="k_shape"),
             helper.make_node("Slice", ["q_shape", "s1", "s2"], ["len_q"], name="len_q"),
             helper.make_node("Slice", ["k_shape", "s1", "s2"], ["len_k"], name="len_k"),
             helper.make_node("Concat", ["len_q", "len_k"], ["grid"], axis=0, name="grid"),
             helper.make_node("Expand", ["one", "grid"], ["ones"], name="ones"),
             helper.make_node("Trilu", ["ones"] + (["diag"] if trilu_k else []), ["tril"],
                              upper=0, name="tril"),
             helper.make_node("Equal", ["tril", "zero"], ["above"], name="above")]
    if where:
        g.initializer.append(_const("ninf", -np.inf, np.float32))
        add = helper.make_node("Where", ["above", "ninf", "scaled"], ["masked"], name="fill")
    else:
        nodes.append(helper.make_node("Where", ["above", "big", "zero"], ["mask"], name="mask"))
        add = helper.make_node("Add", ["scaled", "mask"], ["masked"], name="mask_add")
    softmax = next(i for i, n in enumerate(g.node) if n.op_type == "Softmax")
    g.node[softmax].input[0] = "masked"
    rebuilt = list(g.node[:softmax]) + nodes + [add] + list(g.node[softmax:])
    del g.node[:]
    g.node.extend(rebuilt)
    return model


def folded_kt_decomposition(correct=True, b=2, h=2, s=8, d=8):
    """BHSD attention whose K^T is made as torch makes it with dynamic shapes:
    Reshape(k, [-1, S, D]) -> Transpose(0,2,1) -> Reshape(., [B, H, D, S]), with the shape
    vectors sliced from Shape(k). With correct=False the last Reshape targets [B, H, S, D]
    instead (not a transpose; only valid because S == D here)."""
    et = TensorProto.FLOAT
    dims = ["batch", h, "seq", d]
    inputs = [helper.make_tensor_value_info(n, et, dims) for n in "qkv"]
    inits = [_const(n, v, np.int64) for n, v in
             (("minus1", [-1]), ("i0", [0]), ("i2", [2]), ("i3", [3]), ("i4", [4]))]
    inits.append(_const("sqrt_d", np.sqrt(d), np.float32))
    last = ["bh", "dd", "ss"] if correct else ["bh", "ss", "dd"]
    nodes = [helper.make_node("Shape", ["k"], ["kshape"], name="kshape"),
             helper.make_node("Slice", ["kshape", "i0", "i2"], ["bh"], name="bh"),
             helper.make_node("Slice", ["kshape", "i2", "i3"], ["ss"], name="ss"),
             helper.make_node("Slice", ["kshape", "i3", "i4"], ["dd"], name="dd"),
             helper.make_node("Concat", ["minus1", "ss", "dd"], ["flat"], axis=0, name="flat"),
             helper.make_node("Concat", last, ["unflat"], axis=0, name="unflat"),
             helper.make_node("Reshape", ["k", "flat"], ["k3"], name="k3"),
             helper.make_node("Transpose", ["k3"], ["k3t"], perm=[0, 2, 1], name="k3t"),
             helper.make_node("Reshape", ["k3t", "unflat"], ["kt"], name="kt"),
             helper.make_node("MatMul", ["q", "kt"], ["scores"], name="qk"),
             helper.make_node("Div", ["scores", "sqrt_d"], ["scaled"], name="scale"),
             helper.make_node("Softmax", ["scaled"], ["probs"], axis=-1, name="softmax"),
             helper.make_node("MatMul", ["probs", "v"], ["o"], name="pv")]
    kt_dims = ["batch", h, d, "seq"] if correct else ["batch", h, "seq", d]
    graph = helper.make_graph(nodes, "folded_kt", inputs,
                              [helper.make_tensor_value_info("o", et, dims)], inits,
                              value_info=[helper.make_tensor_value_info("kt", et, kt_dims)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model
