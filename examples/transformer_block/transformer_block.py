"""A transformer block on fattn's op, run and exported to ONNX with the TensorRT plugin's node.

The seed's shape by default: x [1, S, 4096], 32 heads of 128, bf16. Runs the block with fattn and
with torch's SDPA on the same weights and reports the difference (and timings on a GPU), then
exports it with dynamic batch and sequence axes and prints the CustomAttnPlugin node.

    python3 examples/transformer_block/transformer_block.py --seq 4096 --export /tmp/block.onnx
    python3 examples/transformer_block/transformer_block.py --hidden 256 --heads 4 --seq 64 \\
        --dtype float32 --device cpu --export /tmp/small.onnx
"""
import argparse
import time

import torch
import torch.nn.functional as F

import fattn


class TransformerBlock(torch.nn.Module):
    """Pre-norm self-attention and MLP. Q, K, V come out of one projection as a packed
    (B, S, 3, H, D) tensor; fattn reads its q, k, v slices in place (BSHD views)."""

    def __init__(self, hidden, heads, use_fattn=True):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.use_fattn = use_fattn
        self.norm1 = torch.nn.LayerNorm(hidden)
        self.qkv = torch.nn.Linear(hidden, 3 * hidden)
        self.proj = torch.nn.Linear(hidden, hidden)
        self.norm2 = torch.nn.LayerNorm(hidden)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(hidden, 4 * hidden),
                                       torch.nn.GELU(approximate="tanh"),
                                       torch.nn.Linear(4 * hidden, hidden))

    def attention(self, x):
        b, s, hidden = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, self.head_dim).unbind(2)
        if self.use_fattn:
            o = fattn.custom_attn(q, k, v)
        else:
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                               v.transpose(1, 2)).transpose(1, 2)
        return self.proj(o.reshape(b, s, hidden))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _time(fn, device, repeats=10):
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def _print_node(path):
    import onnx

    model = onnx.load(path, load_external_data=False)
    for node in model.graph.node:
        if node.op_type == fattn.export.PLUGIN_NAME:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            print(f"node {node.name}: {node.domain}::{node.op_type}{list(node.input)} -> "
                  f"{list(node.output)} attributes {attrs}")
    for value in (*model.graph.input, *model.graph.output):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        print(f"{value.name}: {dims}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=15708)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16",
                        choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--export", metavar="PATH", help="write the ONNX model here")
    parser.add_argument("--legacy", action="store_true", help="use the TorchScript exporter")
    args = parser.parse_args()
    if args.heads <= 0 or args.hidden % args.heads:
        parser.error(f"--hidden ({args.hidden}) must be a multiple of --heads ({args.heads})")

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    block = TransformerBlock(args.hidden, args.heads).to(device, dtype).eval()
    reference = TransformerBlock(args.hidden, args.heads, use_fattn=False).to(device, dtype).eval()
    reference.load_state_dict(block.state_dict())
    x = torch.randn(args.batch, args.seq, args.hidden, device=device, dtype=dtype)

    with torch.no_grad():
        y, y_ref = block(x), reference(x)
        err = ((y.double() - y_ref.double()).norm() / y_ref.double().norm()).item()
        print(f"block {tuple(x.shape)} {args.dtype} on {device}: relative L2 difference to the "
              f"SDPA block {err:.2e}")
        if device.type == "cuda":
            print(f"  fattn block {_time(lambda: block(x), device):.2f} ms, SDPA block "
                  f"{_time(lambda: reference(x), device):.2f} ms "
                  f"({torch.cuda.get_device_name(device)})")
            b, s, h, d = args.batch, args.seq, args.heads, args.hidden // args.heads
            q, k, v = (torch.randn(b, s, h, d, device=device, dtype=dtype) for _ in range(3))
            ms_fattn = _time(lambda: fattn.custom_attn(q, k, v), device)
            ms_sdpa = _time(lambda: F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)), device)
            tflops = 4 * b * h * s * s * d / 1e9
            print(f"  attention alone: fattn.custom_attn {ms_fattn:.2f} ms "
                  f"({tflops / ms_fattn:.0f} TFLOPS), torch SDPA (default backend) "
                  f"{ms_sdpa:.2f} ms ({tflops / ms_sdpa:.0f} TFLOPS)")

    if args.export:
        # Two rows let the batch axis stay symbolic (torch.export specialises size-1 dims).
        example = torch.randn(2, min(args.seq, 64), args.hidden, device=device, dtype=dtype)
        kwargs = dict(input_names=["x"], output_names=["y"])
        if args.legacy:
            fattn.export_onnx(block, (example,), args.export, dynamo=False,
                              dynamic_axes={"x": {0: "batch", 1: "seq"},
                                            "y": {0: "batch", 1: "seq"}}, **kwargs)
        else:
            dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
            fattn.export_onnx(block, (example,), args.export, dynamic_shapes=(dims,), **kwargs)
        print(f"exported {args.export}")
        _print_node(args.export)


if __name__ == "__main__":
    main()
