#!/usr/bin/env python3
"""Golden data for vitscale's model tests: small timm Vision Transformers with random weights, run forward and
backward on PyTorch (CPU, float32), written as safetensors files under tests/golden/vit/.

Run from the repository root with a Python that has torch (1.13 made the first files, 2.15 classic_gap_fcnorm),
timm 1.0.31 and safetensors:

    python3 tests/reference/vit_reference.py --out tests/golden/vit

What it writes (one file per variant, <out>/<variant>.safetensors):

  classic_cls    VisionTransformer defaults: class token (with its own pos_embed entry), global_pool='token'
  classic_gap    no class token, global_pool='avg', fc_norm=False (final `norm` on the tokens, then the mean:
                 big_vision's order), act_layer='gelu_tanh'
  classic_map    no class token, global_pool='map' (AttentionPoolLatent), qk_norm=True in the blocks
  parallel_map   ViT-22B: ParallelScalingBlock, qkv_bias=False (-> per-block `mlp_bias`), qk_norm=True,
                 RmsNorm(eps=1e-6) everywhere, no class token, global_pool='map'
  classic_gap_fcnorm  no class token, global_pool='avg', fc_norm=True: timm's `norm` is an Identity and
                 `fc_norm` normalises the mean of the tokens (output.tokens are the last block's output)
  sincos_cls     class token, no_embed_class=True, pos_embed overwritten by big_vision's posemb_sincos_2d and
                 frozen (stored as `buffer.pos_embed`, no `grad.pos_embed`)
  classic_cls_adamw  classic_cls after 3 AdamW steps on its batch (PyTorch's AdamW, timm's decay groups)
  resample_cls   classic_cls's weights at 20 px, pos_embed resampled by timm's resample_abs_pos_embed
                 (bicubic, antialias=True) to 7x7 and the model run at 28 px
  posemb_resample  resample_abs_pos_embed on a random table, several modes (see write_posemb_resample)

Common model arguments: img_size=20, patch_size=4 (5x5 = 25 patches), in_chans=3, num_classes=10, embed_dim=32,
depth=2, num_heads=2 (head dim 16), mlp_ratio=2.0 (MLP 64), norm_layer=partial(nn.LayerNorm, eps=1e-6) unless the
variant says otherwise, every dropout rate 0; the model is in eval() mode with gradients on. Batch B=3.

Conventions of every model file (all tensors float32, so a reader needs nothing else):
  <timm state-dict name>  every trainable parameter under its timm name and shape (blocks.0.attn.qkv.weight is
                          [3*D, D] = (out, in); patch_embed.proj.weight is the conv kernel [D, C, p, p])
  input.images   [B, H, W, C]  NHWC (timm takes NCHW; the script permutes)
  input.labels   [B]           integer class ids held as float32
  output.logits  [B, classes]
  output.loss    [1]           mean softmax cross-entropy of the logits vs the labels (F.cross_entropy)
  output.dlogits [B, classes]  d loss / d logits
  output.features [B, D]       the pooled features = the input of `head` (timm's forward_head(pre_logits=True))
  output.tokens  [B, N, D]     the tokens after the final `norm` (timm's forward_features), prefix tokens included
  grad.<name>    d loss / d parameter, for every trainable parameter
  buffer.pos_embed  (sincos_cls only) the fixed sin-cos table [1, 25, D] added to the patch tokens
  resampled.pos_embed (resample_cls only) the resampled table [1, 50, D] the model ran with
  __metadata__   variant, timm constructor arguments (JSON), versions, conventions

Weights are not timm's init (zero heads and tiny tokens would make tests weak): every parameter is random with a
fixed seed -- matrices and conv kernels N(0, 1/fan_in), biases (mlp_bias included) N(0, 0.1^2), cls_token /
pos_embed / attn_pool.latent N(0, 0.5^2), norm scales 1 + 0.1 N(0,1), norm biases 0.1 N(0,1). Images N(0,1),
labels uniform in [0, classes).

Checks done here (asserts): the trainable tensor set equals what include/vitscale/config/tensors.hpp lists for
the variant; a second forward of the module gives the same logits; an independent functional re-implementation
in float64 (NHWC in, unfolded patches, explicit attention / norms / GELU) agrees with timm on tokens, features,
logits, loss and every gradient. Attention runs on timm's non-fused (math) path in float32: torch 1.13 has no
F.scaled_dot_product_attention, and TIMM_FUSED_ATTN=0 is set besides. Runs are single-threaded and the files
are written by a small reproducible writer (sorted header), so a rerun gives byte-identical files.

Gradients that are zero in exact arithmetic (compare them with an absolute tolerance, ~1e-7 here): a bias added
to every key shifts every score of a query by the same amount, which softmax ignores, so the key part of
attn.qkv.bias (rows D..2D) without qk_norm, attn.k_norm.bias with qk_norm, and the key part of attn_pool.kv.bias
(rows 0..D) have gradients of rounding size only.
"""
import argparse
import hashlib
import json
import math
import os
import struct
import sys
from functools import partial

os.environ["TIMM_FUSED_ATTN"] = "0"  # before timm is imported: the math path of attention

import torch
import torch.nn as nn
import torch.nn.functional as F
import timm
from safetensors import safe_open
from safetensors.torch import load_file
from timm.layers import RmsNorm, resample_abs_pos_embed
from timm.models.vision_transformer import Block, ParallelScalingBlock, VisionTransformer

B = 3
IMG = 20
PATCH = 4
CHANS = 3
CLASSES = 10
D = 32
DEPTH = 2
HEADS = 2
MLP_RATIO = 2.0
MLP = int(D * MLP_RATIO)
EPS = 1e-6

COMMON = dict(img_size=IMG, patch_size=PATCH, in_chans=CHANS, num_classes=CLASSES, embed_dim=D, depth=DEPTH,
              num_heads=HEADS, mlp_ratio=MLP_RATIO, drop_rate=0.0, pos_drop_rate=0.0, patch_drop_rate=0.0,
              proj_drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0)
LN = partial(nn.LayerNorm, eps=EPS)
RMS = partial(RmsNorm, eps=EPS)
MAP = dict(class_token=False, global_pool="map")

# variant: (seed, timm constructor arguments beyond COMMON)
VARIANTS = {
    "classic_cls": (1001, dict(norm_layer=LN, class_token=True, global_pool="token", qkv_bias=True)),
    "classic_gap": (1002, dict(norm_layer=LN, class_token=False, global_pool="avg", fc_norm=False,
                               act_layer="gelu_tanh")),
    "classic_map": (1003, dict(norm_layer=LN, qk_norm=True, **MAP)),
    "parallel_map": (1004, dict(norm_layer=RMS, block_fn=ParallelScalingBlock, qkv_bias=False, qk_norm=True,
                                **MAP)),
    "sincos_cls": (1005, dict(norm_layer=LN, class_token=True, global_pool="token", no_embed_class=True)),
    "classic_gap_fcnorm": (1006, dict(norm_layer=LN, class_token=False, global_pool="avg", fc_norm=True)),
}
RESAMPLE_GRID = 7  # resample_cls runs classic_cls at 28 px


# ----------------------------------------------------------------------------------------------------------------
# helpers

def describe(v):
    """A JSON-friendly spelling of a constructor argument."""
    if isinstance(v, partial):
        kw = ", ".join(f"{k}={v!r}" for k, v in v.keywords.items())
        return f"functools.partial({describe(v.func)}, {kw})"
    if isinstance(v, type):
        return f"{v.__module__}.{v.__qualname__}"
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [describe(x) for x in v]
    return repr(v)


def timm_args(extra, img_size=IMG):
    args = dict(COMMON, img_size=img_size)
    args.update(extra)
    return args


def build(extra, img_size=IMG):
    model = VisionTransformer(**timm_args(extra, img_size))
    model.eval()  # dropout off (all rates are 0 anyway); gradients stay on
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            assert not m.fused_attn, f"{type(m).__name__} would use F.scaled_dot_product_attention"
    return model


NORM_TYPES = (nn.LayerNorm, RmsNorm)


def randomize(model, seed):
    """Every parameter random, in named_parameters() order, from one generator."""
    g = torch.Generator().manual_seed(seed)
    owner = {}
    for mname, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            owner[f"{mname}.{pname}" if mname else pname] = (m, pname)
    with torch.no_grad():
        for name, p in model.named_parameters():
            m, pname = owner[name]
            z = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if isinstance(m, NORM_TYPES):
                v = 1.0 + 0.1 * z if pname == "weight" else 0.1 * z
            elif isinstance(m, (nn.Linear, nn.Conv2d)):
                if pname == "weight":
                    v = z / math.sqrt(p[0].numel())
                else:
                    v = 0.1 * z
            elif name in ("cls_token", "pos_embed", "attn_pool.latent"):
                v = 0.5 * z
            elif pname == "mlp_bias":
                v = 0.1 * z
            else:
                raise AssertionError(f"no init rule for parameter {name}")
            p.copy_(v)


def posemb_sincos_2d(h, w, width, temperature=10000.0):
    """big_vision models/vit.py posemb_sincos_2d, computed in float64, returned as float32 [1, h*w, width]."""
    assert width % 4 == 0
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                          indexing="ij")
    omega = torch.arange(width // 4, dtype=torch.float64) / (width // 4 - 1)
    omega = 1.0 / temperature ** omega
    y = y.flatten()[:, None] * omega[None, :]
    x = x.flatten()[:, None] * omega[None, :]
    pe = torch.cat([torch.sin(x), torch.cos(x), torch.sin(y), torch.cos(y)], dim=1)
    return pe.to(torch.float32)[None]


def expected_tensors(extra, grid, learned_posemb=True):
    """Names and shapes of the trainable tensors, as include/vitscale/config/tensors.hpp lists them."""
    cls = extra.get("class_token", True)
    pool = extra.get("global_pool", "token")
    parallel = extra.get("block_fn", Block) is ParallelScalingBlock
    qkv_bias = extra.get("qkv_bias", True)
    qk_norm = extra.get("qk_norm", False)
    norm_bias = extra.get("norm_layer", LN) is not RMS
    hd = D // HEADS
    t = {}

    def norm(scale, bias, n):
        t[scale] = [n]
        if norm_bias:
            t[bias] = [n]

    if cls:
        t["cls_token"] = [1, 1, D]
    if learned_posemb:
        entries = grid * grid + (1 if cls and not extra.get("no_embed_class", False) else 0)
        t["pos_embed"] = [1, entries, D]
    t["patch_embed.proj.weight"] = [D, CHANS, PATCH, PATCH]
    t["patch_embed.proj.bias"] = [D]
    for b in range(DEPTH):
        p = f"blocks.{b}."
        if not parallel:
            norm(p + "norm1.weight", p + "norm1.bias", D)
            t[p + "attn.qkv.weight"] = [3 * D, D]
            if qkv_bias:
                t[p + "attn.qkv.bias"] = [3 * D]
            if qk_norm:
                norm(p + "attn.q_norm.weight", p + "attn.q_norm.bias", hd)
                norm(p + "attn.k_norm.weight", p + "attn.k_norm.bias", hd)
            t[p + "attn.proj.weight"] = [D, D]
            t[p + "attn.proj.bias"] = [D]
            norm(p + "norm2.weight", p + "norm2.bias", D)
            t[p + "mlp.fc1.weight"] = [MLP, D]
            t[p + "mlp.fc1.bias"] = [MLP]
            t[p + "mlp.fc2.weight"] = [D, MLP]
            t[p + "mlp.fc2.bias"] = [D]
        else:
            norm(p + "in_norm.weight", p + "in_norm.bias", D)
            t[p + "in_proj.weight"] = [MLP + 3 * D, D]
            if qkv_bias:
                t[p + "in_proj.bias"] = [MLP + 3 * D]
            else:
                t[p + "mlp_bias"] = [MLP]
            if qk_norm:
                norm(p + "q_norm.weight", p + "q_norm.bias", hd)
                norm(p + "k_norm.weight", p + "k_norm.bias", hd)
            t[p + "attn_out_proj.weight"] = [D, D]
            t[p + "attn_out_proj.bias"] = [D]
            t[p + "mlp_out_proj.weight"] = [D, MLP]
            t[p + "mlp_out_proj.bias"] = [D]
    if extra.get("fc_norm", False):
        norm("fc_norm.weight", "fc_norm.bias", D)  # timm: `norm` is an Identity, fc_norm follows the pooling
    else:
        norm("norm.weight", "norm.bias", D)
    if pool == "map":
        t["attn_pool.latent"] = [1, 1, D]
        t["attn_pool.q.weight"] = [D, D]
        t["attn_pool.q.bias"] = [D]
        t["attn_pool.kv.weight"] = [2 * D, D]
        t["attn_pool.kv.bias"] = [2 * D]
        t["attn_pool.proj.weight"] = [D, D]
        t["attn_pool.proj.bias"] = [D]
        norm("attn_pool.norm.weight", "attn_pool.norm.bias", D)
        t["attn_pool.mlp.fc1.weight"] = [MLP, D]
        t["attn_pool.mlp.fc1.bias"] = [MLP]
        t["attn_pool.mlp.fc2.weight"] = [D, MLP]
        t["attn_pool.mlp.fc2.bias"] = [D]
    t["head.weight"] = [CLASSES, D]
    t["head.bias"] = [CLASSES]
    return t


# ----------------------------------------------------------------------------------------------------------------
# an independent functional forward (float64), written the way the C++ side computes: NHWC images, unfolded
# patches, explicit norms, attention and GELU. It only reads tensors by their names.

def ref_norm(x, P, prefix, rms):
    w = P[prefix + ".weight"]
    if rms:
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + EPS) * w
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) * torch.rsqrt(var + EPS) * w + P[prefix + ".bias"]


def ref_gelu(x, tanh):
    if tanh:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def ref_attention(q, k, v):
    # q: [B, H, Nq, hd], k, v: [B, H, N, hd] -> [B, Nq, H*hd]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s - s.amax(-1, keepdim=True)
    p = torch.exp(s)
    p = p / p.sum(-1, keepdim=True)
    o = p @ v
    return o.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def ref_forward(P, images, extra, pos_embed_key="pos_embed"):
    """images: [B, H, W, C] -> (tokens [B, N, D], features [B, D], logits [B, classes])."""
    cls = extra.get("class_token", True)
    pool = extra.get("global_pool", "token")
    parallel = extra.get("block_fn", Block) is ParallelScalingBlock
    rms = extra.get("norm_layer", LN) is RMS
    tanh = extra.get("act_layer", None) == "gelu_tanh"
    no_embed_class = extra.get("no_embed_class", False)
    Bn, H, W, C = images.shape
    p = PATCH
    gh, gw = H // p, W // p
    hd = D // HEADS
    # patch vector ordered (channel, row in patch, column in patch) = the conv kernel's [D, C, p, p] layout
    x = images.reshape(Bn, gh, p, gw, p, C).permute(0, 1, 3, 5, 2, 4).reshape(Bn, gh * gw, C * p * p)
    x = x @ P["patch_embed.proj.weight"].reshape(D, -1).T + P["patch_embed.proj.bias"]
    pe = P[pos_embed_key]
    if cls:
        tok = P["cls_token"].expand(Bn, 1, D)
        if no_embed_class:
            x = torch.cat([tok, x + pe], dim=1)
        else:
            x = torch.cat([tok, x], dim=1) + pe
    else:
        x = x + pe
    N = x.shape[1]

    def heads(t, n):
        return t.reshape(Bn, n, HEADS, hd).transpose(1, 2)

    for b in range(DEPTH):
        pre = f"blocks.{b}."
        if not parallel:
            y = ref_norm(x, P, pre + "norm1", rms)
            qkv = y @ P[pre + "attn.qkv.weight"].T
            if pre + "attn.qkv.bias" in P:
                qkv = qkv + P[pre + "attn.qkv.bias"]
            q, k, v = (heads(t, N) for t in qkv.split(D, dim=-1))
            if pre + "attn.q_norm.weight" in P:
                q = ref_norm(q, P, pre + "attn.q_norm", rms)
                k = ref_norm(k, P, pre + "attn.k_norm", rms)
            a = ref_attention(q, k, v) @ P[pre + "attn.proj.weight"].T + P[pre + "attn.proj.bias"]
            x = x + a
            y = ref_norm(x, P, pre + "norm2", rms)
            h = ref_gelu(y @ P[pre + "mlp.fc1.weight"].T + P[pre + "mlp.fc1.bias"], tanh)
            x = x + h @ P[pre + "mlp.fc2.weight"].T + P[pre + "mlp.fc2.bias"]
        else:
            y = ref_norm(x, P, pre + "in_norm", rms)
            y = y @ P[pre + "in_proj.weight"].T
            if pre + "in_proj.bias" in P:
                y = y + P[pre + "in_proj.bias"]
            h, q, k, v = y.split([MLP, D, D, D], dim=-1)  # in_proj rows: [mlp hidden | q | k | v]
            if pre + "mlp_bias" in P:
                h = h + P[pre + "mlp_bias"]
            q, k, v = heads(q, N), heads(k, N), heads(v, N)
            if pre + "q_norm.weight" in P:
                q = ref_norm(q, P, pre + "q_norm", rms)
                k = ref_norm(k, P, pre + "k_norm", rms)
            a = ref_attention(q, k, v) @ P[pre + "attn_out_proj.weight"].T + P[pre + "attn_out_proj.bias"]
            m = ref_gelu(h, tanh) @ P[pre + "mlp_out_proj.weight"].T + P[pre + "mlp_out_proj.bias"]
            x = x + a + m
    fc_norm = extra.get("fc_norm", False)
    tokens = x if fc_norm else ref_norm(x, P, "norm", rms)
    if fc_norm:
        assert pool == "avg"
        feats = ref_norm(tokens[:, (1 if cls else 0):].mean(1), P, "fc_norm", rms)
    elif pool == "token":
        feats = tokens[:, 0]
    elif pool == "avg":
        feats = tokens[:, (1 if cls else 0):].mean(1)
    elif pool == "map":
        kv_in = tokens[:, (1 if cls else 0):]
        n = kv_in.shape[1]
        q = P["attn_pool.latent"].expand(Bn, 1, D) @ P["attn_pool.q.weight"].T + P["attn_pool.q.bias"]
        kv = kv_in @ P["attn_pool.kv.weight"].T + P["attn_pool.kv.bias"]
        k, v = kv.split(D, dim=-1)  # kv rows: [k | v]
        o = ref_attention(heads(q, 1), heads(k, n), heads(v, n))
        o = o @ P["attn_pool.proj.weight"].T + P["attn_pool.proj.bias"]  # no residual around the attention
        y = ref_norm(o, P, "attn_pool.norm", rms)
        h = ref_gelu(y @ P["attn_pool.mlp.fc1.weight"].T + P["attn_pool.mlp.fc1.bias"], tanh)
        o = o + h @ P["attn_pool.mlp.fc2.weight"].T + P["attn_pool.mlp.fc2.bias"]
        feats = o[:, 0]
    else:
        raise AssertionError(pool)
    logits = feats @ P["head.weight"].T + P["head.bias"]
    return tokens, feats, logits


def check_close(what, got, want, atol, rtol=1e-4):
    got = got.double()
    want = want.double()
    err = (got - want).abs().max().item()
    tol = atol + rtol * want.abs().max().item()
    assert err <= tol, f"{what}: max |diff| {err:.3e} > {tol:.3e}"
    return err


# ----------------------------------------------------------------------------------------------------------------
# one model file

def run_model(model, images_nhwc, labels):
    """Forward + backward of a timm model; returns the outputs (float32, detached) and the gradients."""
    model.zero_grad(set_to_none=True)
    x = images_nhwc.permute(0, 3, 1, 2).contiguous()  # timm takes NCHW
    tokens = model.forward_features(x)
    feats = model.forward_head(tokens, pre_logits=True)
    logits = model.head(feats)
    logits.retain_grad()
    loss = F.cross_entropy(logits, labels.long())
    loss.backward()
    out = {
        "output.logits": logits.detach().clone(),
        "output.loss": loss.detach().reshape(1).clone(),
        "output.dlogits": logits.grad.detach().clone(),
        "output.features": feats.detach().clone(),
        "output.tokens": tokens.detach().clone(),
    }
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    # a second, independent forward through the module's own forward(): same logits
    with torch.no_grad():
        again = model(x)
    assert torch.allclose(again, out["output.logits"], rtol=0, atol=1e-6), "second forward disagrees"
    # the softmax cross-entropy gradient, by hand
    onehot = F.one_hot(labels.long(), CLASSES).to(torch.float32)
    dl = (torch.softmax(out["output.logits"], -1) - onehot) / labels.shape[0]
    check_close("dlogits by hand", out["output.dlogits"], dl, 1e-7)
    return out, grads


def check_against_reference(name, extra, tensors, images, labels, trainable, pos_embed_key="pos_embed"):
    """Float64 functional forward/backward from the stored tensors; compare with timm's float32 results."""
    P = {k: v.double().clone().requires_grad_(k in trainable) for k, v in tensors.items()
         if not k.startswith(("input.", "output.", "grad."))}
    tokens, feats, logits = ref_forward(P, images.double(), extra, pos_embed_key)
    loss = F.cross_entropy(logits, labels.long())
    loss.backward()
    errs = [
        check_close(f"{name} tokens", tensors["output.tokens"], tokens.detach(), 1e-4),
        check_close(f"{name} features", tensors["output.features"], feats.detach(), 1e-4),
        check_close(f"{name} logits", tensors["output.logits"], logits.detach(), 1e-4),
        check_close(f"{name} loss", tensors["output.loss"], loss.detach().reshape(1), 1e-5),
    ]
    gerr = 0.0
    for k in trainable:
        g = P[k].grad
        gerr = max(gerr, check_close(f"{name} grad.{k}", tensors["grad." + k], g, 1e-5, rtol=1e-3))
    return max(errs), gerr


def make_inputs(seed, img):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(B, img, img, CHANS, generator=g, dtype=torch.float32)
    labels = torch.randint(0, CLASSES, (B,), generator=g).to(torch.float32)
    return images, labels


def metadata(variant, args, extra_meta=None):
    md = {
        "variant": variant,
        "timm_constructor": "timm.models.vision_transformer.VisionTransformer",
        "timm_args": json.dumps({k: describe(v) for k, v in args.items()}, sort_keys=True),
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
        "images": "input.images is NHWC [B,H,W,C]; labels are float32 class ids",
        "names": "parameters under timm state-dict names; grad.<name>; output.*; input.*",
        "init": "matrices N(0,1/fan_in), biases N(0,0.01), tokens/pos_embed/latent N(0,0.25), "
                "norm scales 1+0.1N, norm biases 0.1N",
    }
    if extra_meta:
        md.update(extra_meta)
    return md


def write(path, tensors, md):
    """A safetensors file written byte-for-byte reproducibly (the safetensors package orders the metadata
    keys at random): header keys sorted, tensors laid out in name order, header padded with spaces to 8 bytes.
    Read back with the safetensors package to make sure it is a valid file."""
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    header = {"__metadata__": dict(sorted(md.items()))}
    blobs, offset = [], 0
    for k in sorted(tensors):
        v = tensors[k]
        assert torch.isfinite(v).all(), f"{k} has non-finite values"
        data = v.numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)
    back = load_file(path)
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors), path
    with safe_open(path, "pt") as f:
        assert f.metadata() == md


def write_variant(out_dir, name, seed, extra):
    model = build(extra)
    randomize(model, seed)
    sincos = name == "sincos_cls"
    if sincos:
        with torch.no_grad():
            model.pos_embed.copy_(posemb_sincos_2d(IMG // PATCH, IMG // PATCH, D))
        model.pos_embed.requires_grad_(False)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    want = expected_tensors(extra, IMG // PATCH, learned_posemb=not sincos)
    got = {n: list(p.shape) for n, p in trainable.items()}
    assert got == want, f"{name}: tensors differ from tensors.hpp:\n timm {got}\n want {want}"

    images, labels = make_inputs(seed + 1, IMG)
    out, grads = run_model(model, images, labels)
    tensors = {n: p.detach().clone() for n, p in trainable.items()}
    if sincos:
        tensors["buffer.pos_embed"] = model.pos_embed.detach().clone()
    tensors["input.images"] = images
    tensors["input.labels"] = labels
    tensors.update(out)
    tensors.update({"grad." + n: g for n, g in grads.items()})
    assert set(grads) == set(trainable)

    key = "buffer.pos_embed" if sincos else "pos_embed"
    ferr, gerr = check_against_reference(name, extra, tensors, images, labels, list(trainable), key)
    md = metadata(name, timm_args(extra),
                  {"posemb": "buffer.pos_embed = big_vision posemb_sincos_2d(5, 5, 32, 10000), frozen, "
                             "added to the patches before the class token is prepended"} if sincos else None)
    path = os.path.join(out_dir, name + ".safetensors")
    write(path, tensors, md)
    return dict(variant=name, params=sum(p.numel() for p in trainable.values()), tensors=len(trainable),
                loss=out["output.loss"].item(), ferr=ferr, gerr=gerr, path=path, names=sorted(trainable))


def write_resample(out_dir, seed, extra):
    """classic_cls's weights at 20 px, run at 28 px with the pos_embed resampled to 7x7."""
    grid = RESAMPLE_GRID
    img = grid * PATCH
    model20 = build(extra)
    randomize(model20, seed)
    params20 = {n: p.detach().clone() for n, p in model20.named_parameters()}
    pe28 = resample_abs_pos_embed(params20["pos_embed"], new_size=[grid, grid], num_prefix_tokens=1,
                                  interpolation="bicubic", antialias=True)
    # timm's own path to a new resolution gives the same table
    model20.set_input_size(img_size=(img, img))
    assert torch.equal(model20.pos_embed.detach(), pe28), "set_input_size disagrees with resample_abs_pos_embed"

    model = build(extra, img_size=img)
    sd = dict(params20)
    sd["pos_embed"] = pe28
    model.load_state_dict(sd, strict=True)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert {n: list(p.shape) for n, p in trainable.items()} == expected_tensors(extra, grid)

    images, labels = make_inputs(seed + 2, img)
    out, grads = run_model(model, images, labels)
    # reference check at 28 px with the resampled table
    run = {n: p.detach().clone() for n, p in trainable.items()}
    run["input.images"] = images
    run.update(out)
    run.update({"grad." + n: g for n, g in grads.items()})
    ferr, gerr = check_against_reference("resample_cls", extra, run, images, labels, list(trainable))

    tensors = dict(params20)  # 20 px parameters under their names (pos_embed [1, 26, D])
    tensors["resampled.pos_embed"] = pe28
    tensors["input.images"] = images
    tensors["input.labels"] = labels
    tensors.update(out)
    tensors.update({"grad." + n: g for n, g in grads.items()})  # grad.pos_embed is [1, 50, D]
    md = metadata("resample_cls", timm_args(extra), {
        "run_img_size": str(img),
        "resample": "resampled.pos_embed = timm.layers.resample_abs_pos_embed(pos_embed, new_size=[7, 7], "
                    "num_prefix_tokens=1, interpolation='bicubic', antialias=True); the model ran at 28 px "
                    "with it as the trainable pos_embed (grad.pos_embed is its gradient)",
    })
    path = os.path.join(out_dir, "resample_cls.safetensors")
    write(path, tensors, md)
    return dict(variant="resample_cls", params=sum(p.numel() for p in trainable.values()), tensors=len(trainable),
                loss=out["output.loss"].item(), ferr=ferr, gerr=gerr, path=path, names=sorted(trainable))


def _cubic(x, a):
    x = abs(x)
    if x < 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def resize_matrix(n_in, n_out, mode, antialias):
    """The [n_out, n_in] matrix of PyTorch's 1-D resize (align_corners=False); F.interpolate in 2-D is this
    applied along rows and along columns. Written out so the C++ side has the formula, checked against timm.
      antialias=True  (PIL's scheme): scale = n_in / n_out, support = r * max(scale, 1) with r = 2 (bicubic,
                      Keys a = -0.5) or 1 (bilinear, triangle); output i has center c = scale * (i + 0.5), takes
                      inputs j in [max(int(c - support + 0.5), 0), min(int(c + support + 0.5), n_in)) with weight
                      k((j - c + 0.5) / max(scale, 1)), normalized to sum 1 (so edges renormalize, no clamping).
      antialias=False: source s = (i + 0.5) * scale - 0.5; bilinear clamps s at 0 and blends floor(s), floor(s) + 1
                      (index clamped); bicubic uses Keys a = -0.75 on floor(s) - 1 .. floor(s) + 2, indices clamped
                      to the edge (replicate)."""
    scale = n_in / n_out
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        if antialias:
            kernel = (lambda x: _cubic(x, -0.5)) if mode == "bicubic" else (lambda x: max(0.0, 1.0 - abs(x)))
            stretch = max(scale, 1.0)
            support = (2.0 if mode == "bicubic" else 1.0) * stretch
            c = scale * (i + 0.5)
            lo, hi = max(int(c - support + 0.5), 0), min(int(c + support + 0.5), n_in)
            w = [kernel((j - c + 0.5) / stretch) for j in range(lo, hi)]
            for j, wj in zip(range(lo, hi), w):
                m[i, j] = wj / sum(w)
        else:
            src = (i + 0.5) * scale - 0.5
            if mode == "bilinear":
                src = max(src, 0.0)
                j0 = int(math.floor(src))
                f = src - j0
                m[i, j0] += 1 - f
                m[i, min(j0 + 1, n_in - 1)] += f
            else:
                j0 = math.floor(src)
                f = src - j0
                for k in range(-1, 3):
                    m[i, min(max(j0 + k, 0), n_in - 1)] += _cubic(f - k, -0.75)
    return m


def write_posemb_resample(out_dir, seed=2001):
    g = torch.Generator().manual_seed(seed)
    grid = IMG // PATCH
    source = torch.randn(1, 1 + grid * grid, D, generator=g, dtype=torch.float32)
    source_np = torch.randn(1, grid * grid, D, generator=g, dtype=torch.float32)
    t = {"source": source, "source_noprefix": source_np}
    for mode in ("bicubic", "bilinear"):
        for aa in (True, False):
            for n in (7, 3):
                r = resample_abs_pos_embed(source, new_size=[n, n], num_prefix_tokens=1, interpolation=mode,
                                           antialias=aa)
                assert r.shape == (1, 1 + n * n, D)
                assert torch.equal(r[:, :1], source[:, :1])
                t[f"{mode}{'' if aa else '_noaa'}.{n}"] = r
                m = resize_matrix(grid, n, mode, aa)
                mine = torch.einsum("ay,bx,yxd->abd", m, m, source[0, 1:].double().reshape(grid, grid, D))
                check_close(f"resize {mode} aa={aa} {n}", r[0, 1:], mine.reshape(n * n, D), 1e-5)
    t["noprefix.bicubic.7"] = resample_abs_pos_embed(source_np, new_size=[7, 7], num_prefix_tokens=0,
                                                     interpolation="bicubic", antialias=True)
    # antialiasing matters even when upsampling: PyTorch's antialiased bicubic uses a = -0.5 (PIL's kernel),
    # the plain one a = -0.75; bilinear upsampling is the same either way
    assert not torch.allclose(t["bicubic.7"], t["bicubic_noaa.7"])
    md = {
        "variant": "posemb_resample",
        "call": "timm.layers.resample_abs_pos_embed(source, new_size=[n, n], num_prefix_tokens=1, "
                "interpolation=<mode>, antialias=<aa>) stored as '<mode>[_noaa].<n>'; prefix entry kept first; "
                "noprefix.bicubic.7 = the same on source_noprefix with num_prefix_tokens=0, bicubic, antialias",
        "grid": "source is a 5x5 grid flattened row-major (y, x) after one prefix entry; align_corners=False",
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
    }
    path = os.path.join(out_dir, "posemb_resample.safetensors")
    write(path, t, md)
    return path, t


ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, steps=3)


def write_adamw_steps(out_dir, seed, extra):
    """classic_cls trained for a few AdamW steps on its own batch, as timm's recipe would: decoupled weight
    decay (PyTorch's AdamW: p -= lr*wd*p) on the weight matrices and the patch kernel only, none on biases,
    norms, pos_embed and cls_token (timm's param_groups_weight_decay). Stores the loss before each step and
    every parameter after the last, as adamw.loss.<k> and adamw.<name>."""
    model = build(extra)
    randomize(model, seed)
    images, labels = make_inputs(seed + 1, IMG)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n not in ("pos_embed", "cls_token")]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and n not in ("pos_embed", "cls_token"))]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=ADAMW["weight_decay"]),
                             dict(params=no_decay, weight_decay=0.0)],
                            lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"])
    x = images.permute(0, 3, 1, 2).contiguous()
    tensors = {}
    for k in range(ADAMW["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), labels.long())
        loss.backward()
        opt.step()
        tensors[f"adamw.loss.{k}"] = loss.detach().reshape(1).clone()
    tensors.update({"adamw." + n: p.detach().clone() for n, p in model.named_parameters()})
    md = metadata("classic_cls_adamw", timm_args(extra),
                  {"adamw": json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in ADAMW.items()}),
                   "start": "classic_cls.safetensors: its parameters and input batch"})
    path = os.path.join(out_dir, "classic_cls_adamw.safetensors")
    write(path, tensors, md)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/golden/vit", help="output folder (default: tests/golden/vit)")
    ap.add_argument("--only", nargs="*", help="write only these model variants (default: every file)")
    args = ap.parse_args()
    assert timm.__version__ == "1.0.31", f"golden data is defined against timm 1.0.31, found {timm.__version__}"
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # same reduction order on every run
    os.makedirs(args.out, exist_ok=True)

    rows = []
    for name, (seed, extra) in VARIANTS.items():
        if not args.only or name in args.only:
            rows.append(write_variant(args.out, name, seed, extra))
    if not args.only:
        rows.append(write_resample(args.out, VARIANTS["classic_cls"][0], VARIANTS["classic_cls"][1]))
        prpath, pr = write_posemb_resample(args.out)
        write_adamw_steps(args.out, VARIANTS["classic_cls"][0], VARIANTS["classic_cls"][1])

    print(f"{'variant':<14} {'#tensors':>8} {'#params':>8} {'loss':>10} {'fwd err':>9} {'grad err':>9}  file")
    for r in rows:
        print(f"{r['variant']:<14} {r['tensors']:>8} {r['params']:>8} {r['loss']:>10.6f} {r['ferr']:>9.2e} "
              f"{r['gerr']:>9.2e}  {os.path.basename(r['path'])}")
    print("(fwd err / grad err: max |timm float32 - independent float64 reference| over outputs / gradients)")
    print()
    total = 0
    for f in sorted(os.listdir(args.out)):
        if f.endswith(".safetensors"):
            p = os.path.join(args.out, f)
            size = os.path.getsize(p)
            total += size
            digest = hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]
            print(f"{size:>9} B  {f}  sha256:{digest}")
    print(f"{total:>9} B  total")
    assert total < 5 * 1024 * 1024, "golden data too large"


if __name__ == "__main__":
    sys.exit(main())
