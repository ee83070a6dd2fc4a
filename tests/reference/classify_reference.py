#!/usr/bin/env python3
"""Reference for examples/classify against timm (test examples.classify_timm).

    python3 tests/reference/classify_reference.py

Builds a small timm ViT (timm's vit_tiny_patch16_224 recipe with depth 2, width 64, 2 heads, MLP 256,
patch 16, 224 px, 10 classes: vitscale's timm_test_vit in examples/classify.cpp) with fixed-seed random
weights, scaled so that the class probabilities are far from uniform (a weak model would hide errors),
and writes
  tests/golden/images/timm_small_vit.safetensors  its state dict (~0.7 MB), with metadata mean, std,
      crop_pct, interpolation from timm's resolve_data_config for the model, and no vitscale.* keys (an
      imported timm file: examples/classify must choose the shape from the tensors alone);
  tests/golden/images/classify_timm_small.json    for each committed image, timm's top-5 class indices and
      probabilities after timm's own eval transform, and a checksum of the resized and cropped 8-bit image
      (sum over i of (i mod 251 + 1) * byte i, channels last) that examples/classify must reproduce exactly, (create_transform(**resolve_data_config({}, model=m)))
      on the image as timm's dataset loads it (PIL, convert("RGB")).
Run tests/reference/make_images.py first.
"""
import json
import math
import os

import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "golden", "images"))
IMAGES = ["fmnist_boot.png", "fmnist_pullover_rgb.png"]


def main():
    torch.manual_seed(20261124)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, depth=2, embed_dim=64,
                          num_heads=2, mlp_ratio=4.0)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            elif name in ("cls_token", "pos_embed"):
                p.copy_(0.5 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
        m.head.weight.mul_(4.0)
    m.eval()
    cfg = resolve_data_config({}, model=m)
    transform = create_transform(**cfg)
    print(cfg)
    print(transform)
    meta = {
        "format": "pt",
        "mean": ",".join(repr(float(v)) for v in cfg["mean"]),
        "std": ",".join(repr(float(v)) for v in cfg["std"]),
        "crop_pct": repr(float(cfg["crop_pct"])),
        "interpolation": cfg["interpolation"],
        "model": "timm vit_tiny_patch16_224(depth=2, embed_dim=64, num_heads=2, num_classes=10), random weights",
    }
    state = {k: v.contiguous() for k, v in m.state_dict().items()}
    save_file(state, os.path.join(OUT, "timm_small_vit.safetensors"), metadata=meta)
    records = []
    for name in IMAGES:
        img = Image.open(os.path.join(OUT, name)).convert("RGB")
        x = transform(img).unsqueeze(0)
        crop = np.asarray(torch.nn.Sequential(*[t for t in transform.transforms[:2]])(img), dtype=np.int64).ravel()
        checksum = int(((np.arange(crop.size) % 251 + 1) * crop).sum())
        with torch.no_grad():
            p = torch.softmax(m(x).double(), dim=-1)[0]
        top = torch.topk(p, 5)
        records.append({"file": name, "top": top.indices.tolist(), "probs": top.values.tolist(),
                        "crop_checksum": checksum})
        print(name, records[-1])
    with open(os.path.join(OUT, "classify_timm_small.json"), "w") as f:
        json.dump({"model": meta["model"], "data_config": {k: (list(v) if isinstance(v, tuple) else v)
                                                          for k, v in cfg.items()},
                   "images": records}, f, indent=1)
        f.write("\n")
    print(os.path.getsize(os.path.join(OUT, "timm_small_vit.safetensors")), "bytes of parameters")


if __name__ == "__main__":
    main()
