#!/usr/bin/env python3
"""Golden data for vitscale's big_vision importer (include/vitscale/io/big_vision.hpp) and .npz reader
(include/vitscale/io/npz.hpp). Run from the repository root:

    python3 tests/reference/big_vision_reference.py     # writes tests/golden/big_vision/

What it writes:

  cls_perblock.npz   a big_vision ViT checkpoint as np.savez writes it (stored members), per-block names
                     Transformer/encoderblock_{i}/..., class token ("tok" pooling), learned pos_embedding
                     [1, 16, D] without a class-token entry (big_vision adds it before prepending the token)
  map_scan.npz       the same kind of model with MAPHead_0 ("map" pooling, no class token), scan-stacked names
                     Transformer/encoderblock/... with a leading depth axis, under big_vision's "params/"
                     prefix, written by np.savez_compressed (deflated members)
  <variant>.safetensors  timm's state dict after timm's own big_vision loader
                     (timm.models.vision_transformer._load_weights) read the .npz into
                     timm.create_model('vit_tiny_patch16_224', pretrained=False, ...), plus
                     input.images [B, H, W, C] (NHWC) and output.logits [B, classes] of that timm model
  legacy_cls.npz     the original ViT code's (AugReg) names: Transformer/posembed_input/pos_embedding [1, 17, D]
                     with the class token's entry first, blocks with LayerNorm_0, MultiHeadDotProductAttention_1,
                     LayerNorm_2, MlpBlock_3; timm's VisionTransformer defaults (class token with its own entry)
  formats.npz        .npy format cases, built member by member with zipfile: versions 1.0 / 2.0 / 3.0, dtypes
                     <f4 <f2 <f8 <i4 |V2 (jax bfloat16 as np.save writes it), a Fortran-order and a big-endian
                     array, a 0-d and an empty array, a deflated member. Values are spelled out in
                     tests/io/npz.cpp.

The model: depth 2, width 16, 2 heads (head dim 8), MLP 32, patch 4, 16 px (4x4 patches), 3 channels,
5 classes, LayerNorm eps 1e-6, tanh GELU (big_vision's nn.gelu). Parameters are random (numpy, fixed seeds):
kernels N(0, 1/fan_in), biases N(0, 0.1^2), cls / pos_embedding / probe N(0, 0.5^2), norm scales
1 + 0.1 N(0, 1), norm biases 0.1 N(0, 1); images N(0, 1), batch 2. Everything is float32 on CPU; attention
on timm's math path (TIMM_FUSED_ATTN=0). Rerunning gives the same arrays and tensors; the .npz bytes differ
in the members' ZIP timestamps, which numpy takes from the clock.
"""
import io
import os
import zipfile

os.environ["TIMM_FUSED_ATTN"] = "0"

import numpy as np
import timm
import torch
from safetensors.numpy import save_file
from timm.models.vision_transformer import _load_weights

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "golden", "big_vision"))

DEPTH, D, HEADS, MLP, PATCH, IMG, CHANS, CLASSES, B = 2, 16, 2, 32, 4, 16, 3, 5, 2
DH = D // HEADS
N = (IMG // PATCH) ** 2


def big_vision_params(rng, pool, legacy=False):
    """A flat {name: array} of big_vision ViT parameters, per-block names."""
    f32 = np.float32

    def kernel(*shape, fan_in):
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(f32)

    def bias(*shape):
        return (0.1 * rng.standard_normal(shape)).astype(f32)

    def ln(prefix, p):
        p[f"{prefix}/scale"] = (1 + 0.1 * rng.standard_normal(D)).astype(f32)
        p[f"{prefix}/bias"] = (0.1 * rng.standard_normal(D)).astype(f32)

    def mha(prefix, p):
        for n in ("query", "key", "value"):
            p[f"{prefix}/{n}/kernel"] = kernel(D, HEADS, DH, fan_in=D)
            p[f"{prefix}/{n}/bias"] = bias(HEADS, DH)
        p[f"{prefix}/out/kernel"] = kernel(HEADS, DH, D, fan_in=D)
        p[f"{prefix}/out/bias"] = bias(D)

    def mlp(prefix, p):
        p[f"{prefix}/Dense_0/kernel"] = kernel(D, MLP, fan_in=D)
        p[f"{prefix}/Dense_0/bias"] = bias(MLP)
        p[f"{prefix}/Dense_1/kernel"] = kernel(MLP, D, fan_in=MLP)
        p[f"{prefix}/Dense_1/bias"] = bias(D)

    p = {}
    p["embedding/kernel"] = kernel(PATCH, PATCH, CHANS, D, fan_in=PATCH * PATCH * CHANS)
    p["embedding/bias"] = bias(D)
    if legacy:
        p["Transformer/posembed_input/pos_embedding"] = (0.5 * rng.standard_normal((1, N + 1, D))).astype(f32)
    else:
        p["pos_embedding"] = (0.5 * rng.standard_normal((1, N, D))).astype(f32)
    if pool == "tok":
        p["cls"] = (0.5 * rng.standard_normal((1, 1, D))).astype(f32)
    for i in range(DEPTH):
        b = f"Transformer/encoderblock_{i}"
        ln(f"{b}/LayerNorm_0", p)
        mha(f"{b}/MultiHeadDotProductAttention_{1 if legacy else 0}", p)
        ln(f"{b}/LayerNorm_{2 if legacy else 1}", p)
        mlp(f"{b}/MlpBlock_{3 if legacy else 0}", p)
    ln("Transformer/encoder_norm", p)
    if pool == "map":
        p["MAPHead_0/probe"] = (0.5 * rng.standard_normal((1, 1, D))).astype(f32)
        mha("MAPHead_0/MultiHeadDotProductAttention_0", p)
        ln("MAPHead_0/LayerNorm_0", p)
        mlp("MAPHead_0/MlpBlock_0", p)
    p["head/kernel"] = kernel(D, CLASSES, fan_in=D)
    p["head/bias"] = bias(CLASSES)
    return p


def scan_stack(p):
    """big_vision's pyloop_to_scan: Transformer/encoderblock_{i}/x -> Transformer/encoderblock/x [DEPTH, ...]."""
    out = {k: v for k, v in p.items() if not k.startswith("Transformer/encoderblock_")}
    suffixes = sorted({k.split("/", 2)[2] for k in p if k.startswith("Transformer/encoderblock_")})
    for s in suffixes:
        out[f"Transformer/encoderblock/{s}"] = np.stack([p[f"Transformer/encoderblock_{i}/{s}"] for i in range(DEPTH)])
    return out


def timm_model(pool, legacy=False):
    extra = dict(class_token=True, global_pool="token", no_embed_class=not legacy) if pool == "tok" else \
        dict(class_token=False, global_pool="map")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=IMG, patch_size=PATCH,
                              in_chans=CHANS, num_classes=CLASSES, embed_dim=D, depth=DEPTH, num_heads=HEADS,
                              mlp_ratio=MLP / D, act_layer="gelu_tanh", **extra)
    model.eval()
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    return model


def write_variant(name, pool, scanned, compressed, prefix, seed, legacy=False):
    rng = np.random.default_rng(seed)
    p = big_vision_params(rng, pool, legacy)
    if scanned:
        p = scan_stack(p)
    p = {prefix + k: v for k, v in p.items()}
    path = os.path.join(OUT, name + ".npz")
    (np.savez_compressed if compressed else np.savez)(path, **p)

    torch.manual_seed(seed)
    model = timm_model(pool, legacy)
    with torch.no_grad():
        for t in model.parameters():  # timm's init would hide a tensor the loader left alone
            t.fill_(float("nan"))
    _load_weights(model, path)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    for k, v in state.items():
        assert np.isfinite(v).all(), f"{name}: timm's loader left {k} unset"
    images = rng.standard_normal((B, IMG, IMG, CHANS)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()).numpy()
    tensors = dict(state)
    tensors["input.images"] = images
    tensors["output.logits"] = logits.astype(np.float32)
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())},
              os.path.join(OUT, name + ".safetensors"),
              metadata={"variant": name, "timm": timm.__version__, "torch": torch.__version__,
                        "numpy": np.__version__, "pool": pool, "scanned": str(scanned),
                        "prefix": prefix, "compressed": str(compressed),
                        "legacy": str(legacy)})
    os.chmod(os.path.join(OUT, name + ".safetensors"), 0o644)  # the package writes 0600
    print(f"{name}: {len(p)} arrays, {len(state)} timm tensors, logits[0,:3] {logits[0, :3]}")


def npy_bytes(array, version=None):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version, allow_pickle=False)
    return buf.getvalue()


def write_formats():
    a = (np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 0.25 - 3)  # exact in f2, f4, f8 and bf16
    bf16_bits = (a.view(np.uint32) >> 16).astype(np.uint16)  # a is exact in bf16: truncation is exact
    members = [
        ("f4_v1.npy", npy_bytes(a, (1, 0)), zipfile.ZIP_STORED),
        ("f2_v2.npy", npy_bytes(a.astype(np.float16), (2, 0)), zipfile.ZIP_STORED),
        ("f8_v3.npy", npy_bytes(a.astype(np.float64), (3, 0)), zipfile.ZIP_STORED),
        ("i4.npy", npy_bytes(np.arange(6, dtype=np.int32).reshape(2, 3) - 2), zipfile.ZIP_STORED),
        ("bf16.npy", npy_bytes(bf16_bits.view(np.dtype("V2"))), zipfile.ZIP_STORED),
        ("fortran.npy", npy_bytes(np.asfortranarray(a)), zipfile.ZIP_STORED),
        ("big_endian.npy", npy_bytes(a.astype(">f4")), zipfile.ZIP_STORED),
        ("scalar.npy", npy_bytes(np.float32(7.5)), zipfile.ZIP_STORED),
        ("empty.npy", npy_bytes(np.zeros((0, 3), np.float32)), zipfile.ZIP_STORED),
        ("deflated.npy", npy_bytes(np.tile(a, (8, 1, 1))), zipfile.ZIP_DEFLATED),
    ]
    path = os.path.join(OUT, "formats.npz")
    with zipfile.ZipFile(path, "w") as z:
        for name, data, method in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, data)
    # numpy reads it back as written
    with np.load(path) as f:
        assert np.array_equal(f["f4_v1"], a) and np.array_equal(f["f2_v2"], a) and np.array_equal(f["f8_v3"], a)
        assert f["bf16"].dtype == np.dtype("V2") and f["fortran"].flags.f_contiguous
        assert np.array_equal(f["deflated"], np.tile(a, (8, 1, 1)))
    print(f"formats: {len(members)} members")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    write_variant("cls_perblock", "tok", scanned=False, compressed=False, prefix="", seed=2001)
    write_variant("map_scan", "map", scanned=True, compressed=True, prefix="params/", seed=2002)
    write_variant("legacy_cls", "tok", scanned=False, compressed=False, prefix="", seed=2003, legacy=True)
    write_formats()


if __name__ == "__main__":
    main()
