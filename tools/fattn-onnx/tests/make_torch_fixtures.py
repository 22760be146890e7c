"""Regenerates the torch-exported fixtures in fixtures/ (committed; run again only to refresh):

  torch_attention_block.onnx  a causal self-attention block written out by hand (QKV Linear,
                              head view/transpose, q @ k^T / sqrt(d) + causal buffer, softmax,
                              @ v, merge heads, output Linear), dynamo exporter, opset 20
  torch_sdpa_opset23.onnx     the same block through F.scaled_dot_product_attention(is_causal=True),
                              exported at opset 23 (ONNX Attention)
  torch_sdpa_dynamic_opset20.onnx  the SDPA block with dynamic batch and sequence axes at opset
                              20: a decomposition whose causal mask is computed from the
                              sequence length at run time and whose K is transposed through
                              Reshape -> Transpose -> Reshape

Small on purpose (embed 32, 2 heads of 16, 8 tokens) so that they stay a few kilobytes.
Usage: python3 make_torch_fixtures.py [OUT_DIR]
"""
import math
import os
import sys

import torch
import torch.nn.functional as F


class Block(torch.nn.Module):
    def __init__(self, embed=32, heads=2, seq=8, sdpa=False):
        super().__init__()
        self.heads, self.head_dim, self.sdpa = heads, embed // heads, sdpa
        self.qkv = torch.nn.Linear(embed, 3 * embed)
        self.proj = torch.nn.Linear(embed, embed)
        self.register_buffer("causal", torch.triu(torch.full((seq, seq), float("-inf")), 1))

    def forward(self, x):
        b, s, e = x.shape
        q, k, v = self.qkv(x).split(e, dim=-1)
        q, k, v = (t.view(b, s, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim) + self.causal[:s, :s]
            y = scores.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, s, e))


def export(module, path, opset, dynamic=False):
    torch.manual_seed(0)
    x = torch.randn(2 if dynamic else 1, 8, 32)
    kwargs = {}
    if dynamic:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")},)
    torch.onnx.export(module.eval(), (x,), path, dynamo=True, opset_version=opset,
                      external_data=False, input_names=["x"], output_names=["y"], **kwargs)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    export(Block(), os.path.join(out, "torch_attention_block.onnx"), 20)
    torch.manual_seed(0)
    export(Block(sdpa=True), os.path.join(out, "torch_sdpa_opset23.onnx"), 23)
    torch.manual_seed(0)
    export(Block(sdpa=True), os.path.join(out, "torch_sdpa_dynamic_opset20.onnx"), 20, dynamic=True)


if __name__ == "__main__":
    main()
