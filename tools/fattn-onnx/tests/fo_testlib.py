"""Helpers shared by the fattn-onnx tests: running the tool, checking models with onnx's full
checker (the plugin op gets a local schema so that it is checked too), and evaluating fused
graphs with the plugin node computed by libfattn's CPU path."""
import glob
import os
import subprocess

import numpy as np
import onnx
from onnx import defs, helper, shape_inference

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
FIXTURES = os.path.join(HERE, "fixtures")


def tool_path():
    env = os.environ.get("FATTN_ONNX")
    if env:
        return env
    built = glob.glob(os.path.join(REPO, "build*", "tools", "fattn-onnx", "fattn-onnx"))
    if not built:
        raise RuntimeError("fattn-onnx not built; set FATTN_ONNX or build the fattn-onnx target")
    return max(built, key=os.path.getmtime)


def run_tool(*args, expect=0):
    """Runs fattn-onnx; asserts the exit status; returns (stdout, stderr)."""
    r = subprocess.run([tool_path(), *map(str, args)], capture_output=True, text=True)
    assert r.returncode == expect, (
        f"fattn-onnx {' '.join(map(str, args))} exited {r.returncode}, expected {expect}\n"
        f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r.stdout, r.stderr


_schema_registered = False


def register_plugin_schema():
    """Registers attn::CustomAttnPlugin v1 with onnx, with type and shape inference (o has q's
    type and shape), so that check_model(full_check=True) checks plugin nodes like any other."""
    global _schema_registered
    if _schema_registered:
        return
    S = defs.OpSchema
    attrs = [S.Attribute("mode", S.AttrType.INT, "0 native, 1 FP8"),
             S.Attribute("plugin_version", S.AttrType.STRING, "TensorRT plugin version"),
             S.Attribute("plugin_namespace", S.AttrType.STRING, "TensorRT plugin namespace"),
             S.Attribute("causal", S.AttrType.INT, "", required=False),
             S.Attribute("scale", S.AttrType.FLOAT, "", required=False),
             S.Attribute("layout", S.AttrType.INT, "", required=False)]
    schema = S("CustomAttnPlugin", "attn", 1, "fattn attention (TensorRT plugin)",
               inputs=[S.FormalParameter(n, "T") for n in ("q", "k", "v")],
               outputs=[S.FormalParameter("o", "T")],
               type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"],
                                  "")],
               attributes=attrs)

    def infer(ctx):
        ctx.set_output_type(0, ctx.get_input_type(0))

    schema.set_type_and_shape_inference_function(infer)
    defs.register_schema(schema)
    _schema_registered = True


def check(model_or_path):
    """onnx.checker full check plus strict shape inference; returns the loaded model."""
    register_plugin_schema()
    if isinstance(model_or_path, (str, os.PathLike)):
        onnx.checker.check_model(str(model_or_path), full_check=True)
        model = onnx.load(str(model_or_path), load_external_data=False)
    else:
        model = model_or_path
        onnx.checker.check_model(model, full_check=True)
    shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    return model


def plugin_nodes(model):
    return [n for n in model.graph.node if n.op_type == "CustomAttnPlugin"]


def attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def ops(model):
    return [n.op_type for n in model.graph.node]


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def reference_attention(q, k, v, causal, scale, layout):
    """float64 attention with fattn's semantics (bottom-right causal, GQA), in `layout`."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    if layout == 0:
        q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    b, hq, sq, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    k = np.repeat(k, hq // hkv, axis=1)
    v = np.repeat(v, hq // hkv, axis=1)
    s = (q @ k.transpose(0, 1, 3, 2)) * (scale if scale else 1.0 / np.sqrt(d))
    if causal:
        i = np.arange(sq)[:, None]
        t = np.arange(skv)[None, :]
        s = np.where(t <= i + skv - sq, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    p = np.exp(s - m)
    den = p.sum(axis=-1, keepdims=True)
    o = np.where(den > 0, (p / np.where(den > 0, den, 1)) @ v, 0)
    return o.transpose(0, 2, 1, 3) if layout == 0 else o


def fattn_attention(q, k, v, mode=0, causal=0, scale=0.0, layout=0):
    """The plugin node's computation through libfattn's CPU forward (python/fattn/capi.py).
    The output starts NaN-poisoned and must come back fully written."""
    from fattn import capi
    dtypes = {np.dtype(np.float32): capi.DTYPE_F32, np.dtype(np.float16): capi.DTYPE_F16}
    q, k, v = (np.ascontiguousarray(x) for x in (q, k, v))
    dt = dtypes[q.dtype]
    o = np.full(q.shape, np.nan, dtype=q.dtype)

    def view(x):
        es = x.itemsize
        st = [s // es for s in x.strides]
        b, s, h = (st[0], st[1], st[2]) if layout == 0 else (st[0], st[2], st[1])
        return capi.tensor(x.ctypes.data, b, s, h)

    if layout == 0:
        batch, sq, hq, d = q.shape
        skv, hkv = k.shape[1], k.shape[2]
    else:
        batch, hq, sq, d = q.shape
        hkv, skv = k.shape[1], k.shape[2]
    params = capi.make_params(batch=batch, seqlen_q=sq, seqlen_kv=skv, heads_q=hq,
                              heads_kv=hkv, head_dim=d, dtype=dt, q=view(q), k=view(k),
                              v=view(v), o=view(o), mode=int(mode), causal=bool(causal),
                              scale=float(scale or 0.0))
    capi.cpu_forward(params, 0)
    assert not np.isnan(o).any(), "libfattn left part of the NaN-poisoned output unwritten"
    return o


def plugin_op_class():
    """An onnx.reference op that computes CustomAttnPlugin nodes with libfattn."""
    from onnx.reference.op_run import OpRun

    class CustomAttnPlugin(OpRun):
        op_domain = "attn"

        def _run(self, q, k, v, mode=0, plugin_version="1", plugin_namespace="", causal=0,
                 scale=0.0, layout=0):
            assert plugin_version == "1" and plugin_namespace == ""
            return (fattn_attention(q, k, v, mode, causal, scale, layout),)

    return CustomAttnPlugin


def run_fused(model, feeds):
    """Evaluates a fused model: standard ops by onnx's reference evaluator, plugin nodes by
    libfattn."""
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(model, new_ops=[plugin_op_class()]).run(None, feeds)


def run_ort(model, feeds):
    import onnxruntime as ort
    data = model if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
    sess = ort.InferenceSession(str(data) if isinstance(data, os.PathLike) else data,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def fresh_rng(request_name):
    """A random generator with a fresh seed, printed so that a failure can be replayed
    (FATTN_TEST_SEED pins it)."""
    seed = int(os.environ.get("FATTN_TEST_SEED", int.from_bytes(os.urandom(4), "little")))
    print(f"{request_name}: seed {seed}")
    return np.random.default_rng(seed)
