#!/usr/bin/env python3
"""Oracle for vitscale's compile-time accounting: parameter counts and forward FLOPs of every preset,
measured on timm's own VisionTransformer (PyTorch), written to tests/golden/preset_counts.json.

Run from the repository root with a Python that has torch and timm (e.g. a venv with system site packages
over Debian's python3-torch, then `pip install --no-deps timm`):

    python3 tests/reference/preset_counts.py

Full-depth models of the largest presets do not fit in memory, so each preset is built at depth 1 and 2
and counted there; every block is identical, so count(depth) = count(1) + (depth - 1) * (count(2) - count(1))
is exact. Parameters are grouped by timm's names. FLOPs come from torch.profiler (with_flops) over one
forward pass at batch 1, summed over the products only — aten::addmm / mm / bmm and conv2d (the patch
embedding), 2 FLOPs per multiply-add — which is vitscale's convention (attention products included,
elementwise work not).
"""
import json
import os
import sys
from functools import partial

import torch
import timm
from timm.layers import RmsNorm
from timm.models.vision_transformer import ParallelScalingBlock, VisionTransformer

# name: (depth, width, heads, mlp, patch, extra kwargs) — the presets of include/vitscale/config/presets.hpp
MAP = dict(global_pool="map", class_token=False)
PRESETS = {
    "ViT-Ti/16": (12, 192, 3, 768, 16, {}),
    "ViT-S/16": (12, 384, 6, 1536, 16, {}),
    "ViT-B/16": (12, 768, 12, 3072, 16, {}),
    "ViT-B/32": (12, 768, 12, 3072, 32, {}),
    "ViT-L/16": (24, 1024, 16, 4096, 16, {}),
    "ViT-H/14": (32, 1280, 16, 5120, 14, {}),
    "ViT-g/14": (40, 1408, 16, 6144, 14, MAP),
    "ViT-G/14": (48, 1664, 16, 8192, 14, MAP),
    "ViT-e/14": (56, 1792, 16, 15360, 14, MAP),
    "ViT-22B": (48, 6144, 48, 24576, 14, dict(MAP, block_fn=ParallelScalingBlock, qkv_bias=False,
                                               qk_norm=True, norm_layer=partial(RmsNorm, eps=1e-6))),
}
RESOLUTION = 224
PRODUCTS = ("aten::conv2d", "aten::addmm", "aten::mm", "aten::bmm")

def component(name):
    if name.startswith("blocks."):
        return "blocks"
    for prefix, part in (("cls_token", "cls_token"), ("pos_embed", "pos_embed"), ("patch_embed.", "patch_embed"),
                         ("norm.", "final_norm"), ("attn_pool.", "pool_head"), ("head.", "classifier")):
        if name.startswith(prefix):
            return part
    raise ValueError(f"unexpected parameter {name}")

def build(depth, width, heads, mlp, patch, extra):
    # mlp_ratio is a float in timm and the hidden width is int(ratio * width); nudge the ratio up by less
    # than one unit of the hidden width so that truncation cannot lose a unit.
    ratio = (mlp + 0.25) / width
    model = VisionTransformer(img_size=RESOLUTION, patch_size=patch, embed_dim=width, depth=depth,
                              num_heads=heads, mlp_ratio=ratio, num_classes=1000, fc_norm=False, **extra)
    return model.eval()

def measure(depth, width, heads, mlp, patch, extra):
    model = build(depth, width, heads, mlp, patch, extra)
    for name, p in model.named_parameters():
        if name.endswith("fc1.weight") or name.endswith("mlp_out_proj.weight"):
            assert mlp in p.shape, (name, p.shape, mlp)
    counts = {}
    for name, p in model.named_parameters():
        counts[component(name)] = counts.get(component(name), 0) + p.numel()
    x = torch.randn(1, 3, RESOLUTION, RESOLUTION)
    with torch.no_grad(), torch.profiler.profile(with_flops=True) as prof:
        model(x)
    # the profiler also counts elementwise aten::add and aten::mul, which vitscale's convention leaves out
    flops = sum(e.flops for e in prof.key_averages() if e.flops and e.key in PRODUCTS)
    del model
    return counts, flops

def main():
    torch.manual_seed(0)
    out = {"source": f"timm {timm.__version__} on torch {torch.__version__}", "resolution": RESOLUTION,
           "presets": {}}
    for name, (depth, width, heads, mlp, patch, extra) in PRESETS.items():
        c1, f1 = measure(1, width, heads, mlp, patch, extra)
        c2, f2 = measure(2, width, heads, mlp, patch, extra)
        counts = {k: c1[k] + (depth - 1) * (c2[k] - c1[k]) for k in c1}
        for k in ("cls_token", "pos_embed", "pool_head"):
            counts.setdefault(k, 0)
        counts["total"] = sum(counts.values())
        flops = f1 + (depth - 1) * (f2 - f1)
        out["presets"][name] = {"params": counts, "forward_flops": flops}
        print(f"{name:10s} params {counts['total']:>14,d}  forward FLOPs {flops:>18,d}", file=sys.stderr)
    path = os.path.join(os.path.dirname(__file__), "..", "golden", "preset_counts.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")

if __name__ == "__main__":
    main()
