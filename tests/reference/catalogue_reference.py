#!/usr/bin/env python3
"""Reference for examples/catalogue (test examples.classify_catalogue, examples/catalogue/test_catalogue.cpp).

    /work/venv/bin/python tests/reference/catalogue_reference.py

For one timm model per head kind of the catalogue (class token at 224 and 384 px, GAP, GAP + fc_norm, MAP:
ViT-Ti/16, 1000 classes; a class token with ImageNet-21k's 21843 classes: ViT-S/32), builds the model with
timm.create_model (pretrained=False), sets every parameter by a formula of its name's rank among the sorted
names and the element's row-major index (the C++ test writes the same values under the names and shapes of
the catalogue entry's tensor table, so no weights are committed), runs two formula images, and writes
tests/golden/catalogue/timm_logits.json: per model, the state dict's tensor count, parameter count and a
FNV-1a hash of its sorted "name:shape" lines (the C++ table must have timm's names and shapes), and per image
the first 8 logits, the top-5 classes and logits, and the sum and sum of squares of all logits.
"""
import json
import math
import os

import numpy as np
import timm
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "golden", "catalogue", "timm_logits.json"))

CASES = [
    ("ti16_cls_224", "vit_tiny_patch16_224", {}),
    ("ti16_cls_384", "vit_tiny_patch16_384", {}),
    ("ti16_gap", "vit_tiny_patch16_224", dict(class_token=False, global_pool="avg", fc_norm=False)),
    ("ti16_gap_fc_norm", "vit_tiny_patch16_224", dict(class_token=False, global_pool="avg", fc_norm=True)),
    ("ti16_map", "vit_tiny_patch16_224", dict(class_token=False, global_pool="map")),
    ("s32_cls_in21k", "vit_small_patch32_224", dict(num_classes=21843)),
]


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def value(name, shape, k):
    """The formula examples/catalogue/test_catalogue.cpp's fill() repeats, in double, rounded to float."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    base = np.sin(0.731 * i + 1.913 * k + 0.5)
    if name.endswith(".weight") and "norm" in name.rsplit(".", 2)[-2]:
        v = 1.0 + 0.1 * base
    elif name.endswith(".bias"):
        v = 0.02 * base
    elif len(shape) >= 2 and shape[0] > 1:
        v = base / math.sqrt(n / shape[0])
    else:
        v = 0.02 * base
    if name == "head.weight":
        v = 10.0 * v  # logits of a few units, not a near-uniform distribution
    return v.astype(np.float32).reshape(shape)


def images(res):
    """[2, res, res, 3] channels last, already normalised."""
    b, y, x, c = np.meshgrid(np.arange(2), np.arange(res), np.arange(res), np.arange(3), indexing="ij")
    return np.sin(0.05 * y * (b + 1) + 0.031 * x + 1.7 * c + 0.4 * b).astype(np.float32)


def main():
    out = {"script": "tests/reference/catalogue_reference.py", "timm": timm.__version__, "models": {}}
    for case, arch, kwargs in CASES:
        m = timm.create_model(arch, pretrained=False, **kwargs).eval()
        sd = m.state_dict()
        names = sorted(sd)
        with torch.no_grad():
            for k, name in enumerate(names):
                sd[name].copy_(torch.from_numpy(value(name, tuple(sd[name].shape), k)))
        res = m.patch_embed.img_size[0]
        x = torch.from_numpy(images(res)).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            logits = m(x).double().numpy()
        lines = "".join("%s:%s\n" % (n, ",".join(str(d) for d in sd[n].shape)) for n in names)
        per_image = []
        for row in logits:
            top = np.argsort(-row, kind="stable")[:5]
            per_image.append({"first": [float(v) for v in row[:8]], "top": [int(t) for t in top],
                              "top_logits": [float(row[t]) for t in top], "sum": float(row.sum()),
                              "sumsq": float((row * row).sum())})
        out["models"][case] = {"timm_model": arch, "kwargs": kwargs, "resolution": res,
                               "classes": int(logits.shape[1]), "tensors": len(names),
                               "params": int(sum(sd[n].numel() for n in names)), "names_hash": fnv1a64(lines),
                               "images": per_image}
        print(case, arch, kwargs, res, logits.shape, len(names))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
