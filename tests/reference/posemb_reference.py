#!/usr/bin/env python3
"""Oracle for vitscale/model/posemb.hpp: timm's resample_abs_pos_embed (PyTorch's F.interpolate) and
big_vision's posemb_sincos_2d, written to tests/golden/posemb/{resample,sincos}.json.

Run from the repository root with a Python that has torch and timm:

    python3 tests/reference/posemb_reference.py

Resampling: two random float32 tables, [1 + 4·4, 8] (a class token, then a square grid) and [3·5, 4]
(no prefix, a non-square grid), each resized to several grids with bicubic and bilinear, antialias on and
off. The values come from timm.layers.resample_abs_pos_embed; the script checks that they equal
F.interpolate(align_corners=False) applied directly, so both define the same golden numbers.

Sin-cos: big_vision's formula (models/vit.py, posemb_sincos_2d) in float64 numpy:
ω_i = 1 / 10000^(i / (width/4 − 1)), rows in (y, x) row-major order, [sin(xω) | cos(xω) | sin(yω) | cos(yω)].
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
import timm
from timm.layers import resample_abs_pos_embed

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "golden", "posemb")

SOURCES = [
    # name, prefix, old grid, width, new grids
    ("square", 1, (4, 4), 8, [(6, 6), (7, 5), (3, 3), (2, 2)]),
    ("nonsquare", 0, (3, 5), 4, [(6, 4), (2, 7), (1, 1)]),
]
MODES = [("bicubic", True), ("bicubic", False), ("bilinear", True), ("bilinear", False)]


def rounded(a):
    return [float(f"{v:.8g}") for v in np.asarray(a, dtype=np.float64).ravel()]


def direct(posemb, prefix, old, new, mode, antialias):
    grid = posemb[:, prefix:].reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new, mode=mode, align_corners=False, antialias=antialias)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], -1)
    return torch.cat([posemb[:, :prefix], grid], dim=1)


def resample_cases():
    gen = torch.Generator().manual_seed(0)
    sources = []
    for name, prefix, old, width, news in SOURCES:
        posemb = torch.randn(1, prefix + old[0] * old[1], width, generator=gen, dtype=torch.float32)
        cases = []
        for new in news:
            for mode, antialias in MODES:
                got = resample_abs_pos_embed(posemb, list(new), old_size=list(old), num_prefix_tokens=prefix,
                                             interpolation=mode, antialias=antialias)
                ref = direct(posemb, prefix, old, new, mode, antialias)
                assert torch.equal(got, ref), (name, new, mode, antialias)
                cases.append(dict(new_h=new[0], new_w=new[1], mode=mode, antialias=antialias,
                                  values=rounded(got[0].numpy())))
        sources.append(dict(name=name, prefix=prefix, old_h=old[0], old_w=old[1], width=width,
                            values=[float(v) for v in posemb[0].numpy().ravel()], cases=cases))
    return dict(torch=torch.__version__, timm=timm.__version__, sources=sources)


def sincos(h, w, width, temperature=10000.0):
    y, x = np.mgrid[:h, :w]
    omega = np.arange(width // 4) / (width // 4 - 1)
    omega = 1.0 / (temperature ** omega)
    y = np.einsum("m,d->md", y.flatten(), omega)
    x = np.einsum("m,d->md", x.flatten(), omega)
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "resample.json"), "w") as f:
        json.dump(resample_cases(), f, separators=(",", ":"))
        f.write("\n")
    tables = [dict(h=h, w=w, width=width, values=rounded(sincos(h, w, width)))
              for h, w, width in [(5, 5, 32), (3, 4, 8)]]
    with open(os.path.join(OUT, "sincos.json"), "w") as f:
        json.dump(dict(temperature=10000.0, tables=tables), f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
