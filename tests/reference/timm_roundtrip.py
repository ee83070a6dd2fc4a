#!/usr/bin/env python3
"""Evaluate a checkpoint that vitscale exported (io::save_parameters: timm's names) in timm, on the
Fashion-MNIST test set, and compare with the accuracy vitscale measured (the file's "test_accuracy").

    build/examples/train ...                       # writes vit_fashion_mnist.safetensors
    python3 tests/reference/timm_roundtrip.py vit_fashion_mnist.safetensors

The timm model is built from the file alone: depth, width, patch, channels, MLP width and classes from the
tensor shapes, heads and resolution from vitscale's metadata (vitscale.heads, vitscale.resolution), pooling
from the presence of cls_token (class token) or not (global average pooling, as the example trains); the
inputs are normalised with the file's "mean" and "std". Exit status 1 if the accuracies differ by more than
--tolerance (vitscale evaluates its bf16_mixed models with bf16 GEMM inputs; timm here runs in float32).
"""
import argparse
import os
import re
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))
from fmnist_idx import load_split  # noqa: E402  (examples/fmnist_idx.py: the one IDX reader of the peers)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--tolerance", type=float, default=0.002, help="largest accepted accuracy difference")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heads", type=int, help="for files without vitscale.heads (written before it existed)")
    ap.add_argument("--resolution", type=int, help="for files without vitscale.resolution")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with safe_open(args.checkpoint, "pt") as f:
        meta = f.metadata() or {}
    state = {k: v.float() for k, v in load_file(args.checkpoint).items()}
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    width, channels, patch, _ = state["patch_embed.proj.weight"].shape
    mlp = state["blocks.0.mlp.fc1.weight"].shape[0]
    classes = state["head.weight"].shape[0]
    heads = args.heads or int(meta["vitscale.heads"])
    resolution = args.resolution or int(meta["vitscale.resolution"])
    class_token = "cls_token" in state
    model = VisionTransformer(img_size=resolution, patch_size=patch, in_chans=channels, num_classes=classes,
                              embed_dim=width, depth=depth, num_heads=heads, mlp_ratio=mlp / width,
                              class_token=class_token, global_pool="token" if class_token else "avg",
                              fc_norm=False)
    model.load_state_dict(state, strict=True)
    model.eval()

    images, labels = load_split(args.data, "test")
    labels = labels.astype(np.int64)
    mean, std = float(meta["mean"]), float(meta["std"])
    x = torch.from_numpy(((images / 255.0 - mean) / std).astype(np.float32)).unsqueeze(1)  # NCHW
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            correct += int((model(x[i:i + 500]).argmax(1).numpy() == labels[i:i + 500]).sum())
    timm_acc = correct / len(x)
    ours = float(meta["test_accuracy"])
    print(f"timm {timm_acc * 100:.2f}% vs vitscale {ours * 100:.2f}% on {len(x)} test images "
          f"(model: depth {depth}, width {width}, {heads} heads, MLP {mlp}, patch {patch}, {resolution} px)")
    sys.exit(0 if abs(timm_acc - ours) <= args.tolerance else 1)


if __name__ == "__main__":
    main()
