#!/usr/bin/env python3
"""Oracle for vitscale/train/loss.hpp and vitscale/train/schedule.hpp, written to
tests/golden/train/{losses,schedules}.json.

Run from the repository root with a Python that has torch and numpy:

    python3 tests/reference/train_reference.py

Losses: random float32 logits (some rows scaled to ±80, where a naive exp overflows float), integer labels,
soft targets (mixup-like: a mix of two one-hots plus a multi-hot row) and sigmoid targets in [0, 1]. The
golden loss and gradient come from PyTorch in float64 on the float32 logits (autograd on the batch mean):
    softmax, integer labels: F.cross_entropy(z, labels, label_smoothing=eps)  (eps = 0 and 0.1)
    softmax, soft targets:   mean_b(−Σ_c y·log_softmax(z))                      (big_vision's softmax_xent)
    sigmoid:                 F.binary_cross_entropy_with_logits(z, y, reduction='sum') / B
                             (big_vision's sigmoid_xent: summed over classes, mean over the batch)
The script also checks that PyTorch in float32 agrees with the float64 values.

Schedules: big_vision's utils.create_learning_rate_schedule, step_fn, rewritten in float64 numpy (warmup
and cooldown multiply the decay; progress = clip((step − warmup)/(total − warmup), 0, 1)), evaluated at
every step of small schedules and at the key steps of a long one.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "golden", "train")


def exact(a):
    # float32 values printed with 9 significant digits round-trip exactly.
    return [float(f"{v:.9g}") for v in np.asarray(a, dtype=np.float64).ravel()]


def precise(a):
    # 11 significant digits: far below the float32 results they are compared with.
    return [float(f"{v:.11g}") for v in np.asarray(a, dtype=np.float64).ravel()]


def logits_case(gen, b, c, scale):
    z = torch.randn(b, c, generator=gen, dtype=torch.float32) * scale
    return z


def grad_of(fn, z32):
    z = z32.to(torch.float64).clone().requires_grad_(True)
    loss = fn(z)
    loss.backward()
    # float32 PyTorch, to confirm the float64 numbers are what a float32 framework computes too.
    z_f = z32.clone().requires_grad_(True)
    loss_f = fn(z_f)
    loss_f.backward()
    assert abs(loss_f.item() - loss.item()) <= 1e-5 * max(1.0, abs(loss.item())), (loss_f.item(), loss.item())
    assert torch.allclose(z_f.grad.double(), z.grad, atol=1e-6), (z_f.grad - z.grad).abs().max()
    return loss.item(), z.grad.numpy()


def loss_cases():
    gen = torch.Generator().manual_seed(0)
    cases = []
    # (name, B, C, scale): odd sizes, a single row, and large magnitudes.
    shapes = [("small", 5, 7, 2.0), ("wide", 2, 37, 4.0), ("large", 4, 10, 80.0), ("one", 1, 50, 3.0)]
    for name, b, c, scale in shapes:
        z = logits_case(gen, b, c, scale)
        if name == "large":
            z = z.clamp(-80.0, 80.0)
            z[0, 0] = 80.0
            z[1, 1] = -80.0
        labels = torch.randint(0, c, (b,), generator=gen)
        case = dict(name=name, batch=b, classes=c, logits=exact(z.numpy()), labels=labels.tolist())

        for eps in (0.0, 0.1):
            loss, grad = grad_of(lambda t: F.cross_entropy(t, labels, label_smoothing=eps), z)
            case[f"hard_eps{eps}"] = dict(label_smoothing=eps, loss=loss, dlogits=precise(grad))

        # Soft targets: row 0 a mix of two one-hots (mixup), row 1 multi-hot (not summing to one), the rest
        # random distributions.
        soft = torch.rand(b, c, generator=gen, dtype=torch.float32)
        soft = soft / soft.sum(dim=1, keepdim=True)
        soft[0] = 0
        soft[0, labels[0]] += 0.7
        soft[0, (labels[0] + 1) % c] += 0.3
        if b > 1:
            soft[1] = (torch.rand(c, generator=gen) < 0.3).float()
        soft64 = soft.to(torch.float64)
        loss, grad = grad_of(
            lambda t: (-(soft64 if t.dtype == torch.float64 else soft) * F.log_softmax(t, dim=1)).sum(dim=1).mean(), z)
        case["soft"] = dict(targets=exact(soft.numpy()), loss=loss, dlogits=precise(grad))

        y = torch.rand(b, c, generator=gen, dtype=torch.float32)
        y[:, ::2] = (y[:, ::2] > 0.5).float()  # hard 0/1 targets in even columns, soft in odd ones
        y64 = y.to(torch.float64)
        loss, grad = grad_of(
            lambda t: F.binary_cross_entropy_with_logits(t, y64 if t.dtype == torch.float64 else y,
                                                         reduction="sum") / b, z)
        case["sigmoid"] = dict(targets=exact(y.numpy()), loss=loss, dlogits=precise(grad))
        cases.append(case)
    return cases


def big_vision_lr(step, total, base, decay_type, warmup, cooldown, **kw):
    """big_vision.utils.create_learning_rate_schedule's step_fn, in float64 numpy."""
    lr = base
    progress = np.clip((step - warmup) / float(total - warmup), 0.0, 1.0)
    if decay_type == "linear":
        end = kw.get("end", 0.0)
        lr = end + (lr - end) * (1.0 - progress)
    elif decay_type == "cosine":
        # big_vision's cosine has no end value; vitscale's end_value = 0 is big_vision's.
        end = kw.get("end", 0.0)
        lr = end + (lr - end) * 0.5 * (1.0 + np.cos(np.pi * progress))
    elif decay_type == "rsqrt":
        t, shift = kw["timescale"], kw.get("shift", 0)
        with np.errstate(invalid="ignore", divide="ignore"):  # np.where evaluates the branch it discards
            lr = np.where(warmup <= step, lr / np.sqrt(1 + (step + shift - warmup) / t), lr / np.sqrt(1 + shift / t))
    elif decay_type == "constant":
        pass
    else:
        raise ValueError(decay_type)
    if warmup:
        lr = lr * np.minimum(1.0, step / warmup)
    if cooldown:
        lr = lr * np.minimum(1.0, (total - step) / cooldown)
    return np.asarray(lr, dtype=np.float64)


def schedule_cases():
    # kind, parameters (as the C++ structs name them), steps: every step of short schedules, key steps of long.
    configs = [
        ("rsqrt", dict(peak=1e-3, warmup=5, timescale=4.0, cooldown=6, total=30, shift=0.0)),
        ("rsqrt", dict(peak=8e-4, warmup=0, timescale=10.0, cooldown=0, total=25, shift=3.0)),
        ("rsqrt", dict(peak=1e-3, warmup=10_000, timescale=10_000.0, cooldown=50_000, total=1_000_000, shift=0.0)),
        ("cosine", dict(peak=3e-3, warmup=4, end_value=0.0, cooldown=0, total=21)),
        ("cosine", dict(peak=3e-3, warmup=7, end_value=1e-5, cooldown=3, total=23)),
        ("cosine", dict(peak=1e-3, warmup=10_000, end_value=0.0, cooldown=0, total=300_000)),
        ("linear", dict(peak=1e-2, warmup=3, end_value=0.0, cooldown=0, total=17)),
        ("linear", dict(peak=1e-2, warmup=0, end_value=1e-4, cooldown=5, total=19)),
        ("constant", dict(peak=5e-4, warmup=6, cooldown=4, total=20)),
        ("constant", dict(peak=5e-4, warmup=0, cooldown=0, total=9)),
    ]
    cases = []
    for kind, p in configs:
        total, warmup, cooldown = p["total"], p["warmup"], p["cooldown"]
        if total <= 100:
            steps = list(range(total + 1))
        else:
            half = (warmup + total - cooldown) // 2
            steps = sorted({0, 1, warmup // 2, warmup - 1, warmup, warmup + 1, half, total - cooldown - 1,
                            total - cooldown, total - cooldown // 2, total - 1, total})
        kw = {}
        if kind == "rsqrt":
            kw = dict(timescale=p["timescale"], shift=p["shift"])
        elif kind in ("cosine", "linear"):
            kw = dict(end=p["end_value"])
        values = [float(big_vision_lr(float(s), total, p["peak"], kind, warmup, cooldown, **kw)) for s in steps]
        cases.append(dict(kind=kind, params=p, steps=steps, values=precise(values)))
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "losses.json"), "w") as f:
        json.dump(dict(generator="tests/reference/train_reference.py", torch=torch.__version__,
                       cases=loss_cases()), f, separators=(",", ":"))
    with open(os.path.join(OUT, "schedules.json"), "w") as f:
        json.dump(dict(generator="tests/reference/train_reference.py", cases=schedule_cases()), f,
                  separators=(",", ":"))


if __name__ == "__main__":
    main()
