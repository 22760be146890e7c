"""fattn-onnx on the transformer block of examples/transformer_block (seed-like by default:
hidden 4096, 32 heads of 128, bf16; weights go to external data).

Exports the block four ways and runs `fattn-onnx inspect`, `prepare` and `fuse` on each:
  fattn_dynamo   fattn's op, dynamo exporter (a CustomAttnPlugin node already)
  fattn_legacy   fattn's op, TorchScript exporter
  sdpa_opset20   torch SDPA instead of fattn's op, opset 20 (a MatMul/Softmax decomposition)
  sdpa_opset23   torch SDPA, opset 23 (ONNX Attention)
With --check (small float32 shapes only) the SDPA exports are also run: onnxruntime on the
original against the fused model with the plugin computed by libfattn's CPU path.

    PYTHONPATH=python FATTN_LIBRARY=build/src/libfattn.so \\
        python3 tools/fattn-onnx/demo/transformer_block.py --out /tmp/fattn-onnx-demo
"""
import argparse
import importlib.util
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def load_example():
    path = os.path.join(REPO, "examples", "transformer_block", "transformer_block.py")
    spec = importlib.util.spec_from_file_location("transformer_block_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export(block, example, path, legacy=False, opset=None):
    import fattn
    kwargs = dict(input_names=["x"], output_names=["y"])
    if legacy:
        fattn.export_onnx(block, (example,), path, dynamo=False,
                          dynamic_axes={"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}},
                          **kwargs)
    else:
        dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
        if opset:
            kwargs["opset_version"] = opset
        fattn.export_onnx(block, (example,), path, dynamic_shapes=(dims,), **kwargs)


def tool(*args):
    from fo_testlib import tool_path
    cmd = [tool_path(), *args]
    print("$ fattn-onnx " + " ".join(os.path.basename(a) if os.sep in a else a for a in args),
          flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(r.stdout + r.stderr, flush=True)
    if r.returncode != 0:
        raise SystemExit(f"fattn-onnx exited {r.returncode}")


def check_numerics(original, fused, hidden):
    import numpy as np
    import onnx
    from fo_testlib import check, rel_l2, run_fused, run_ort
    check(fused)
    x = np.random.default_rng(0).standard_normal((2, 48, hidden)).astype(np.float32)
    expected = run_ort(original, {"x": x})[0]
    got = run_fused(onnx.load(fused), {"x": x})[0]
    print(f"check {os.path.basename(fused)}: x {x.shape}, rel L2 fused (libfattn plugin) vs "
          f"onnxruntime on the original: {rel_l2(got, expected):.2e}\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--out", default="/tmp/fattn-onnx-demo")
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    ex = load_example()
    os.makedirs(args.out, exist_ok=True)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    block = ex.TransformerBlock(args.hidden, args.heads).to(dtype).eval()
    sdpa = ex.TransformerBlock(args.hidden, args.heads, use_fattn=False).to(dtype).eval()
    sdpa.load_state_dict(block.state_dict())
    example = torch.randn(2, 64, args.hidden, dtype=dtype)
    variants = [("fattn_dynamo", block, {}), ("fattn_legacy", block, {"legacy": True}),
                ("sdpa_opset20", sdpa, {"opset": 20}), ("sdpa_opset23", sdpa, {"opset": 23})]
    for name, module, kw in variants:
        path = os.path.join(args.out, name + ".onnx")
        with torch.no_grad():
            export(module, example, path, **kw)
        print(f"==== {name}: hidden {args.hidden}, {args.heads} heads, {args.dtype}\n", flush=True)
        tool("inspect", path)
        prepared = os.path.join(args.out, name + ".prepared.onnx")
        fused = os.path.join(args.out, name + ".fused.onnx")
        tool("prepare", path, prepared)
        tool("fuse", path, fused)
        tool("inspect", fused)
        if args.check and name.startswith("sdpa"):
            check_numerics(path, fused, args.hidden)


if __name__ == "__main__":
    main()
