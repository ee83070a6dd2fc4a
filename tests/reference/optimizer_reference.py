#!/usr/bin/env python3
"""Golden values for tests/train/optimizers.cpp, from optax (0.2.8, JAX 0.10.2 on the CPU).

    python3 -m venv --system-site-packages /tmp/optax-venv
    /tmp/optax-venv/bin/pip install optax==0.2.8 jax==0.10.2 jaxlib==0.10.2
    /tmp/optax-venv/bin/python tests/reference/optimizer_reference.py   # writes tests/golden/optim/*.json

(A separate venv: JAX wants numpy 2, the project's venv keeps Debian's numpy 1 for PyTorch.)

Fixed tensors, laid out as the parameter table's matrix views ([out, in] for weights): two matrices that
Adafactor factors (rows > cols and rows < cols, the two ways optax normalises), a classifier matrix too
small to factor (the head decay group), a bias and a norm scale (no decay). Parameters and each step's
gradients are closed-form functions of the arena index, computed in double and rounded to float the same
way by the test. Each case runs 10 steps of
    g <- agc(g) (unit = a row of a weight, the whole tensor otherwise), then clip_by_global_norm
    p <- p - lr_t * u(g) - wd_group * ds_t * p
with u from optax.trace / scale_by_adam / scale_by_lion / big_vision.scale_by_adafactor (re-built here from
optax parts as big_vision/optax.py builds it), and stores every third element of the final parameters (and of the bf16
first moment where there is one).
"""
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_platform_name", "cpu")

TABLE = [  # name, kind, rows, cols
    ("a.weight", "body", 40, 34),
    ("b.weight", "body", 32, 48),
    ("head.weight", "head", 10, 16),
    ("a.bias", "none", 16, 1),
    ("norm.weight", "none", 16, 1),
]
STEPS = 10
WD = {"head": 0.3, "body": 0.03, "none": 0.0}


def offsets():
    out, o = [], 0
    for _, _, r, c in TABLE:
        out.append(o)
        o += r * c
    return out, o


def initial_params(n):
    k = np.arange(n, dtype=np.float64)
    return (0.5 * np.sin(0.731 * k + 0.3)).astype(np.float32)


def gradient(n, t):
    k = np.arange(n, dtype=np.float64)
    return (np.sin(1.37 * k + 0.91 * t + 0.2) * (0.5 + 0.25 * (1 + np.cos(0.013 * k)))).astype(np.float32)


def lr_at(t, peak):
    return peak * (1.0 - 0.05 * t)


def ds_at(t):
    return 1.0 - 0.03 * t


def split(flat):
    offs, _ = offsets()
    return [jnp.asarray(flat[o:o + r * c].reshape((r, c) if c > 1 else (r,))) for o, (_, _, r, c) in zip(offs, TABLE)]


def join(tensors):
    return np.concatenate([np.asarray(x, np.float32).reshape(-1) for x in tensors])


def big_vision_adafactor(b1=0.9, decay_rate=0.8, eps=1e-30, clip=None, beta2_cap=0.999):
    # big_vision/optax.py scale_by_adafactor, rebuilt from optax parts.
    def decay_pow(i, exponent):
        t = jnp.array(i, jnp.float32) + 1.0
        return jnp.minimum(beta2_cap, 1.0 - t ** (-exponent))
    return optax.chain(
        optax.scale_by_factored_rms(factored=True, decay_rate=decay_rate, step_offset=0, min_dim_size_to_factor=32,
                                    epsilon=eps, decay_rate_fn=decay_pow),
        optax.clip_by_block_rms(clip) if clip else optax.identity(),
        optax.ema(b1, debias=False, accumulator_dtype=jnp.bfloat16))


def run(name, tx, peak, agc=0.0, global_norm=0.0, moment=None):
    _, n = offsets()
    params = split(initial_params(n))
    state = tx.init(params)
    for t in range(STEPS):
        g = split(gradient(n, t))
        if agc:
            # optax reduces a 2-D kernel over axis 0 (JAX's [in, out]); ours are [out, in], so transpose.
            tr = lambda xs: [x.T if x.ndim == 2 else x for x in xs]
            clipped, _ = optax.adaptive_grad_clip(agc, eps=1e-3).update(tr(g), optax.EmptyState(), tr(params))
            g = tr(clipped)
        if global_norm:
            g, _ = optax.clip_by_global_norm(global_norm).update(g, optax.EmptyState())
        u, state = tx.update(g, state, params)
        lr = jnp.float32(lr_at(t, peak))
        ds = ds_at(t)
        params = [p - lr * ui - jnp.float32(WD[kind] * ds) * p for p, ui, (_, kind, _, _) in zip(params, u, TABLE)]
    out = {"case": name, "steps": STEPS, "peak_lr": peak, "agc": agc, "global_norm": global_norm,
           "params": [float("%.8g" % x) for x in join(params)[::3]]}
    if moment is not None:
        out["moment"] = [float("%.8g" % x) for x in join(moment(state))[::3]]
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = os.path.join(here, "..", "golden", "optim")
    os.makedirs(out_dir, exist_ok=True)
    cases = [
        run("sgd_fp32", optax.trace(decay=0.9), 0.05),
        run("sgd_bf16_nesterov", optax.trace(decay=0.9, nesterov=True, accumulator_dtype=jnp.bfloat16), 0.05,
            moment=lambda s: [m.astype(jnp.float32) for m in s.trace]),
        run("adamw", optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8), 0.01),
        run("adam_bf16", optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, mu_dtype=jnp.bfloat16), 0.01,
            moment=lambda s: [m.astype(jnp.float32) for m in s.mu]),
        run("adafactor", big_vision_adafactor(), 0.01,
            moment=lambda s: [m.astype(jnp.float32) for m in s[2].ema]),
        run("adafactor_block_rms", big_vision_adafactor(clip=1.0), 0.01),
        run("adamw_agc_global", optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8), 0.01, agc=0.02, global_norm=5.0),
        run("sgd_global", optax.trace(decay=0.9), 0.05, global_norm=5.0),
        run("lion", optax.scale_by_lion(b1=0.9, b2=0.99), 0.001),
        run("lion_bf16_agc", optax.scale_by_lion(b1=0.9, b2=0.99, mu_dtype=jnp.bfloat16), 0.001, agc=0.02,
            moment=lambda s: [m.astype(jnp.float32) for m in s.mu]),
    ]
    for c in cases:
        with open(os.path.join(out_dir, c["case"] + ".json"), "w") as f:
            json.dump(c, f, separators=(",", ":"))
            f.write("\n")
    print("optax", optax.__version__, "jax", jax.__version__, "->", out_dir)


if __name__ == "__main__":
    main()
