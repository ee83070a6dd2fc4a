#!/usr/bin/env python3
"""Golden data for loading a pretrained checkpoint under a new head (tests/io/transfer.cpp,
include/vitscale/io/pretrained.hpp): timm's own transfer path on a small ViT, written under tests/golden/io/.

Run from the repository root with a Python that has torch, timm 1.0.31 and safetensors:

    python3 tests/reference/transfer_reference.py --out tests/golden/io

The model is vit_reference.py's classic_cls (class token with its own pos_embed entry, global_pool='token',
img_size=20, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2, LayerNorm eps 1e-6, 10 classes),
built and randomised by that script's own functions with seed 3001 (every parameter random, heads included).

What it writes:

  transfer_pretrained.safetensors   the 10-class model's state dict under timm's names, nothing else: the
                                    "pretrained checkpoint" the C++ test loads
  transfer_timm.safetensors         timm's fine-tuning models built from it, with a new head of 4 classes:
    input.images20   [3, 20, 20, 3]  NHWC, N(0, 1)
    input.images28   [3, 28, 28, 3]
    output20.features [3, 32]   the 4-class model at 20 px after model.reset_classifier(4) and a zero head
                                (weight and bias), forward_head(pre_logits=True): the input of the head
    output20.logits  [3, 4]     its logits (zero: the head is zero)
    random_head.weight [4, 32], random_head.bias [4]  a head N(0, 1/32), N(0, 0.01) set into that model after
                                the zero-head outputs were taken, and
    output20.random_head_logits [3, 4]  the logits with it (the head's layout and the features it reads)
    output28.pos_embed [1, 50, 32]  the pretrained pos_embed resampled by timm's load path for a 28-px model:
                                checkpoint_filter_fn (resample_abs_pos_embed, bicubic, antialias=True)
    output28.features [3, 32], output28.logits [3, 4]  the 4-class model at 28 px loaded as timm's
                                load_pretrained does when num_classes differs (the classifier keys dropped,
                                load_state_dict(strict=False) with only head.* missing), then a zero head
  __metadata__  versions and the recipe
  transfer_prelogits.npz            tests/golden/big_vision/cls_perblock.npz (a big_vision ViT, 5 classes,
                                    width 16) made into the checkpoint of a model with a pre-logits layer, as
                                    big_vision's rep_size=8 writes it: the same arrays under "params/", plus
                                    params/pre_logits/kernel [16, 8] and /bias [8], params/head/kernel [8, 5]
                                    (the head reads the 8 pre-logits), and 4 optimizer arrays opt/m/* outside
                                    the prefix. Fine-tuning a model without a pre-logits layer under a new head
                                    leaves the pre-logits, the old head and the optimizer arrays unused
                                    (big_vision's transfer does the same). Members stored with a fixed timestamp
                                    (byte-reproducible).

Checks done here (asserts): reset_classifier + zero head leaves the body and the features exactly as the
10-class model's; the 28-px load misses exactly head.weight and head.bias; a second forward agrees.
"""
import argparse
import hashlib
import math
import os
import sys

os.environ["TIMM_FUSED_ATTN"] = "0"  # before timm is imported: the math path of attention

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_reference as ref  # noqa: E402  (build, randomize, write: the same models and file writer)
import timm  # noqa: E402
from timm.models.vision_transformer import checkpoint_filter_fn  # noqa: E402

SEED = 3001
NEW_CLASSES = 4
RUN_IMG = 28


def features_and_logits(model, images_nhwc):
    with torch.no_grad():
        x = images_nhwc.permute(0, 3, 1, 2).contiguous()
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model.head(feats)
        again = model(x)
    assert torch.equal(again, logits), "second forward disagrees"
    return feats.clone(), logits.clone()


def zero_head(model):
    with torch.no_grad():
        nn.init.zeros_(model.head.weight)
        nn.init.zeros_(model.head.bias)


def write_prelogits_npz(out_dir, source):
    import io
    import zipfile
    import numpy as np
    rng = np.random.default_rng(SEED + 2)
    arrays = {}
    with np.load(source) as f:
        for k in f.files:
            if not k.startswith("head/"):
                arrays["params/" + k] = f[k]
    width = arrays["params/embedding/bias"].shape[0]
    arrays["params/pre_logits/kernel"] = (rng.standard_normal((width, 8)) / math.sqrt(width)).astype(np.float32)
    arrays["params/pre_logits/bias"] = (0.1 * rng.standard_normal(8)).astype(np.float32)
    arrays["params/head/kernel"] = (rng.standard_normal((8, 5)) / math.sqrt(8)).astype(np.float32)
    arrays["params/head/bias"] = (0.1 * rng.standard_normal(5)).astype(np.float32)
    for k in range(4):
        arrays[f"opt/m/{k}"] = rng.standard_normal(3).astype(np.float32)
    path = os.path.join(out_dir, "transfer_prelogits.npz")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), version=(1, 0))
            z.writestr(zipfile.ZipInfo(name + ".npy", date_time=(2020, 1, 1, 0, 0, 0)), buf.getvalue())
    with np.load(path) as f:
        assert set(f.files) == set(arrays) and all(np.array_equal(f[k], arrays[k]) for k in arrays)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/golden/io", help="output folder (default: tests/golden/io)")
    args = ap.parse_args()
    assert timm.__version__ == "1.0.31", f"golden data is defined against timm 1.0.31, found {timm.__version__}"
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    extra = ref.VARIANTS["classic_cls"][1]

    # The pretrained model: 10 classes at 20 px, every parameter random.
    pre = ref.build(extra)
    ref.randomize(pre, SEED)
    state = {n: p.detach().clone() for n, p in pre.state_dict().items()}
    trainable = {n for n, p in pre.named_parameters() if p.requires_grad}
    assert set(state) == trainable, f"the state dict holds more than parameters: {set(state) - trainable}"
    assert list(state["head.weight"].shape) == [ref.CLASSES, ref.D]

    g = torch.Generator().manual_seed(SEED + 1)
    images20 = torch.randn(ref.B, ref.IMG, ref.IMG, ref.CHANS, generator=g, dtype=torch.float32)
    images28 = torch.randn(ref.B, RUN_IMG, RUN_IMG, ref.CHANS, generator=g, dtype=torch.float32)
    random_w = torch.randn(NEW_CLASSES, ref.D, generator=g, dtype=torch.float32) / math.sqrt(ref.D)
    random_b = 0.1 * torch.randn(NEW_CLASSES, generator=g, dtype=torch.float32)
    pre_feats, _ = features_and_logits(pre, images20)

    # Fine-tuning at 20 px: timm's reset_classifier, then big_vision's zero head.
    ft = ref.build(extra)
    ft.load_state_dict(state, strict=True)
    ft.reset_classifier(NEW_CLASSES)
    zero_head(ft)
    feats20, logits20 = features_and_logits(ft, images20)
    assert torch.equal(feats20, pre_feats), "reset_classifier changed the features"
    assert torch.count_nonzero(logits20) == 0
    with torch.no_grad():
        ft.head.weight.copy_(random_w)
        ft.head.bias.copy_(random_b)
    _, random_logits20 = features_and_logits(ft, images20)

    # Fine-tuning at 28 px: the checkpoint through timm's filter (pos_embed resampled), the head left out as
    # timm's load_pretrained does for another class count, then a zero head.
    ft28 = ref.build(dict(extra, num_classes=NEW_CLASSES), img_size=RUN_IMG)
    filtered = checkpoint_filter_fn(dict(state), ft28, interpolation="bicubic", antialias=True)
    for k in ("head.weight", "head.bias"):
        filtered.pop(k)
    missing, unexpected = ft28.load_state_dict(filtered, strict=False)
    assert sorted(missing) == ["head.bias", "head.weight"] and not unexpected, (missing, unexpected)
    zero_head(ft28)
    pe28 = ft28.pos_embed.detach().clone()
    assert list(pe28.shape) == [1, 1 + (RUN_IMG // ref.PATCH) ** 2, ref.D]
    feats28, logits28 = features_and_logits(ft28, images28)

    md = ref.metadata("transfer_pretrained", ref.timm_args(extra), {"seed": str(SEED)})
    pretrained_path = os.path.join(args.out, "transfer_pretrained.safetensors")
    ref.write(pretrained_path, state, md)

    tensors = {
        "input.images20": images20,
        "input.images28": images28,
        "output20.features": feats20,
        "output20.logits": logits20,
        "random_head.weight": random_w,
        "random_head.bias": random_b,
        "output20.random_head_logits": random_logits20,
        "output28.pos_embed": pe28,
        "output28.features": feats28,
        "output28.logits": logits28,
    }
    md = ref.metadata("transfer_timm", ref.timm_args(dict(extra, num_classes=NEW_CLASSES)), {
        "recipe": "transfer_pretrained.safetensors -> reset_classifier(4) + zero head (20 px); "
                  "checkpoint_filter_fn(bicubic, antialias=True) without head.* + load_state_dict(strict=False) "
                  "+ zero head (28 px)",
        "run_img_size": str(RUN_IMG),
    })
    timm_path = os.path.join(args.out, "transfer_timm.safetensors")
    ref.write(timm_path, tensors, md)

    npz_path = write_prelogits_npz(args.out, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                         "golden", "big_vision", "cls_perblock.npz"))

    for p in (pretrained_path, timm_path, npz_path):
        size = os.path.getsize(p)
        digest = hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]
        print(f"{size:>9} B  {os.path.basename(p)}  sha256:{digest}")
        assert size < 300 * 1024, "golden data too large"


if __name__ == "__main__":
    main()
