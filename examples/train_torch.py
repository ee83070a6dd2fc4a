#!/usr/bin/env python3
"""PyTorch + timm peer of examples/train: the same ViT (depth 4, width 128, 4 heads, MLP 256, patch 4, 28 px,
1 channel, global average pooling after the final norm, 10 classes), the same data (Fashion-MNIST from the
Debian package, pixels normalised by the training set's mean and std), batch, AdamW and warmup + cosine
schedule — trained for --epochs (default 1), reporting training images/s, time per epoch and test accuracy.

    python3 examples/train_torch.py --threads 2 [--epochs 1] [--steps N]

Threads: torch.set_num_threads(threads) with OMP_WAIT_POLICY=PASSIVE and the BLAS pools sized to match (set
before torch is imported; Debian's torch runs fp32 matmuls on OpenBLAS's pthreads and fights its own OpenMP
pool otherwise).
"""
import argparse
import math
import os
import sys
import time


def parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: whole epochs)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


args = parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import timm  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

from fmnist_idx import load_split  # noqa: E402  (examples/fmnist_idx.py, beside this script)


def load(split):
    return load_split(args.data, split)


def main():
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    xtr, ytr = load("train")
    xte, yte = load("test")
    mean, std = (xtr / 255.0).mean(), (xtr / 255.0).std()
    norm = lambda x: torch.from_numpy(((x / 255.0 - mean) / std).astype(np.float32)).unsqueeze(1)  # NCHW
    xtr_t, xte_t = norm(xtr), norm(xte)
    ytr_t, yte_t = torch.from_numpy(ytr.astype(np.int64)), torch.from_numpy(yte.astype(np.int64))

    model = VisionTransformer(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=128, depth=4,
                              num_heads=4, mlp_ratio=2.0, class_token=False, global_pool="avg", fc_norm=False)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n != "pos_embed"]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and n != "pos_embed")]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=args.weight_decay), dict(params=rest, weight_decay=0.0)],
                            lr=args.lr)
    steps_per_epoch = len(xtr) // args.batch
    total = steps_per_epoch * args.epochs if args.steps == 0 else args.steps
    warmup = min(args.warmup, total // 2)

    def lr_at(step):  # big_vision's warmup + cosine (as vitscale::schedule::warmup_cosine)
        w = min(1.0, step / warmup) if warmup else 1.0
        progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
        return args.lr * w * 0.5 * (1 + math.cos(math.pi * progress))

    print(f"torch {torch.__version__}, timm {timm.__version__}, {args.threads} threads; "
          f"{sum(p.numel() for p in model.parameters())} parameters; {total} steps of batch {args.batch}")
    step, t0 = 0, time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)
    epoch = 0
    while step < total:
        order = torch.randperm(len(xtr), generator=gen)
        model.train()
        te = time.perf_counter()
        n_epoch = 0
        for k in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[k * args.batch:(k + 1) * args.batch]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = F.cross_entropy(model(xtr_t[idx]), ytr_t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            n_epoch += 1
            if step % 50 == 0:
                rate = step * args.batch / (time.perf_counter() - t0)
                print(f"  step {step}/{total} loss {loss.item():.4f} {rate:.0f} img/s", flush=True)
        epoch_time = time.perf_counter() - te
        model.eval()
        with torch.inference_mode():
            correct = sum((model(xte_t[i:i + 500]).argmax(-1) == yte_t[i:i + 500]).sum().item()
                          for i in range(0, len(xte_t), 500))
        epoch += 1
        print(f"epoch {epoch}: {n_epoch} steps in {epoch_time:.1f} s ({n_epoch * args.batch / epoch_time:.1f} img/s, "
              f"{epoch_time / n_epoch * steps_per_epoch:.1f} s per full epoch), test accuracy "
              f"{100.0 * correct / len(xte_t):.2f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
