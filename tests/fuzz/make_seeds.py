#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<reader>/), each file well under 20 kB.

Run from anywhere: python3 tests/fuzz/make_seeds.py. Needs only the Python standard library; the .npz
seeds are cut from tests/golden/big_vision/formats.npz (written by numpy), the safetensors seed
python_mixed.safetensors is copied from tests/golden/io/, and the image seeds are PNGs built here byte by
byte (the JPEG seeds are written by make_jpeg_seeds.cpp, the checkpoint seeds by fuzz_checkpoint itself:
VITSCALE_FUZZ_WRITE_SEEDS=tests/fuzz/corpus/checkpoint <build>/tests/fuzz/fuzz_checkpoint)."""
import gzip
import io
import json
import os
import shutil
import struct
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "golden")


def out(reader, name, data):
    d = os.path.join(HERE, "corpus", reader)
    os.makedirs(d, exist_ok=True)
    assert len(data) < 20000, name
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None, gap=0):
    header, buf = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        buf += b"\0" * gap
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(buf), len(buf) + len(data)]}
        buf += data
    text = json.dumps(header, ensure_ascii=False).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + buf


def seeds_safetensors():
    shutil.copy(os.path.join(DATA, "io", "python_mixed.safetensors"),
                os.path.join(HERE, "corpus", "safetensors", "python_mixed.safetensors"))
    f32 = struct.pack("<6f", 0, 1, -2, 3.5, 1e-30, float("inf"))
    out("safetensors", "f32.safetensors", safetensors([("w", "F32", [2, 3], f32)], {"format": "pt"}))
    out("safetensors", "all_dtypes.safetensors", safetensors([
        ("f64", "F64", [2], struct.pack("<2d", 1.5, -1e300)),
        ("f16", "F16", [3], struct.pack("<3H", 0x3c00, 0x0001, 0x7c00)),
        ("bf16", "BF16", [2, 1], struct.pack("<2H", 0x3f80, 0xff80)),
        ("i64", "I64", [1], struct.pack("<q", -7)),
        ("i32", "I32", [1], struct.pack("<i", 7)),
        ("i16", "I16", [1], struct.pack("<h", 7)),
        ("i8", "I8", [1], b"\xff"),
        ("u8", "U8", [2], b"\x01\x02"),
        ("bool", "BOOL", [2], b"\x00\x01"),
        ("scalar", "F32", [], struct.pack("<f", 2.0)),
        ("empty", "F32", [0, 4], b""),
    ]))
    out("safetensors", "gaps_and_names.safetensors", safetensors(
        [("blocks.0.attn/ä", "F32", [1], struct.pack("<f", 1)), ("z", "BF16", [2], b"\0\0\0\0")],
        {"note": "ümlaut", "k": ""}, gap=4))
    out("safetensors", "empty_header.safetensors", struct.pack("<Q", 2) + b"{}")


def seeds_npz():
    src = zipfile.ZipFile(os.path.join(DATA, "big_vision", "formats.npz"))
    shutil.copy(os.path.join(DATA, "big_vision", "formats.npz"), os.path.join(HERE, "corpus", "npz", "formats.npz"))
    for info in src.infolist():
        data = src.read(info.filename)
        for method, tag in ((zipfile.ZIP_STORED, "stored"), (zipfile.ZIP_DEFLATED, "deflated")):
            b = io.BytesIO()
            with zipfile.ZipFile(b, "w", method) as z:
                z.writestr(info.filename, data)
            out("npz", info.filename[:-4] + "_" + tag + ".npz", b.getvalue())
    # A ZIP64 archive (as numpy writes for members over 4 GiB), and a two-member one.
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        with z.open("f4_v1.npy", "w", force_zip64=True) as m:
            m.write(src.read("f4_v1.npy"))
    out("npz", "zip64.npz", b.getvalue())
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.npy", src.read("f2_v2.npy"))
        z.writestr("b/c.npy", src.read("bf16.npy"))
    out("npz", "two_members.npz", b.getvalue())


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, depth, colour, rows, interlace=0, extra=b"", idat_pieces=1):
    """A PNG whose image data is `rows` (already filtered: a filter byte before each row, per Adam7 pass if
    interlaced), deflated; `extra` chunks go before the image data, which may be split into several IDATs."""
    data = zlib.compress(rows, 9)
    step = -(-len(data) // idat_pieces)
    idats = b"".join(png_chunk(b"IDAT", data[k:k + step]) for k in range(0, len(data), step))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + idats + png_chunk(b"IEND", b"")


def png_rows(width, height, bytes_per_row_fn):
    """Rows with filter types 0..4 in turn, so that every filter is exercised."""
    return b"".join(bytes([y % 5]) + bytes_per_row_fn(y) for y in range(height))


def seeds_image():
    """PNG seeds (the JPEG seeds are written by make_jpeg_seeds.cpp, which needs stb_image_write)."""
    shutil.copy(os.path.join(DATA, "images", "fmnist_boot.png"), os.path.join(HERE, "corpus", "image", "fmnist_boot.png"))

    def ramp(n):
        return lambda y: bytes((y * 7 + x * 13) % 256 for x in range(n))
    w, h = 7, 5
    out("image", "grey8.png", png(w, h, 8, 0, png_rows(w, h, ramp(w))))
    for depth in (1, 2, 4):
        out("image", "grey%d.png" % depth, png(w, h, depth, 0, png_rows(w, h, ramp((w * depth + 7) // 8))))
    out("image", "grey16.png", png(w, h, 16, 0, png_rows(w, h, ramp(2 * w))))
    out("image", "grey_alpha8.png", png(w, h, 8, 4, png_rows(w, h, ramp(2 * w))))
    out("image", "rgb8.png", png(w, h, 8, 2, png_rows(w, h, ramp(3 * w))))
    out("image", "rgb16.png", png(w, h, 16, 2, png_rows(w, h, ramp(6 * w))))
    out("image", "rgba8.png", png(w, h, 8, 6, png_rows(w, h, ramp(4 * w)), idat_pieces=3))
    out("image", "rgba16.png", png(w, h, 16, 6, png_rows(w, h, ramp(8 * w))))
    plte = png_chunk(b"PLTE", bytes(range(48)))
    out("image", "palette4.png", png(w, h, 4, 3, png_rows(w, h, lambda y: bytes([0x12, 0x34, 0x56, 0x70])), extra=plte))
    out("image", "palette8_trns.png", png(w, h, 8, 3, png_rows(w, h, lambda y: bytes(x % 16 for x in range(w))),
                                          extra=plte + png_chunk(b"tRNS", bytes([0, 128, 255]))))
    out("image", "grey8_colour_key.png", png(w, h, 8, 0, png_rows(w, h, ramp(w)),
                                             extra=png_chunk(b"tRNS", b"\x00\x07") + png_chunk(b"tEXt", b"k\x00v")))
    out("image", "rgb8_colour_key.png", png(w, h, 8, 2, png_rows(w, h, ramp(3 * w)),
                                            extra=png_chunk(b"tRNS", b"\x00\x01\x00\x02\x00\x03")))
    # Adam7: the passes' rows one after another.
    x0, y0, dx, dy = (0, 4, 0, 2, 0, 1, 0), (0, 0, 4, 0, 2, 0, 1), (8, 8, 4, 4, 2, 2, 1), (8, 8, 8, 4, 4, 2, 2)
    raw = b""
    for p in range(7):
        pw = max(0, (w - x0[p] + dx[p] - 1) // dx[p])
        ph = max(0, (h - y0[p] + dy[p] - 1) // dy[p])
        if pw and ph:
            raw += png_rows(pw, ph, ramp(3 * pw))
    out("image", "rgb8_interlaced.png", png(w, h, 8, 2, raw, interlace=1))


def npy(shape, values, descr="<f4"):
    """An .npy (version 1.0) of float32 (or '<f2') elements, written without numpy."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d, " % d for d in shape) if len(shape) != 1 else "%d," % shape[0])
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    fmt = "<%d%s" % (len(values), "e" if descr == "<f2" else "f")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack(fmt, *values)


# The tiny big_vision ViTs of fuzz_big_vision.cpp: width 8, 2 heads of 4, MLP 16, patch 2, 1 channel, 3 classes,
# resolution 4 (a 2 x 2 grid); depth 1 (class token) or 2 (MAP head), so that every seed is under 16 kB.
BV_D, BV_H, BV_DH, BV_F, BV_P, BV_C, BV_K, BV_GRID = 8, 2, 4, 16, 2, 1, 3, 2


def big_vision_arrays(depth, pool, scanned, legacy, prefix):
    """(name, shape) of every array of a big_vision ViT checkpoint in include/vitscale/io/big_vision.hpp's map."""
    D, H, dh, F = BV_D, BV_H, BV_DH, BV_F
    arrays = [("embedding/kernel", [BV_P, BV_P, BV_C, D]), ("embedding/bias", [D])]
    if pool == "cls":
        arrays.append(("cls", [1, 1, D]))
    n = BV_GRID * BV_GRID + (1 if legacy and pool == "cls" else 0)
    arrays.append(("Transformer/posembed_input/pos_embedding" if legacy else "pos_embedding", [1, n, D]))
    mha, mlp, ln2 = (("MultiHeadDotProductAttention_1", "MlpBlock_3", "LayerNorm_2") if legacy
                     else ("MultiHeadDotProductAttention_0", "MlpBlock_0", "LayerNorm_1"))
    blocks = ["Transformer/encoderblock"] if scanned else ["Transformer/encoderblock_%d" % i for i in range(depth)]
    lead = [depth] if scanned else []
    for b in blocks:
        for ln in ("LayerNorm_0", ln2):
            arrays += [(b + "/" + ln + "/scale", lead + [D]), (b + "/" + ln + "/bias", lead + [D])]
        for w in ("query", "key", "value"):
            arrays += [(b + "/" + mha + "/" + w + "/kernel", lead + [D, H, dh]),
                       (b + "/" + mha + "/" + w + "/bias", lead + [H, dh])]
        arrays += [(b + "/" + mha + "/out/kernel", lead + [H, dh, D]), (b + "/" + mha + "/out/bias", lead + [D]),
                   (b + "/" + mlp + "/Dense_0/kernel", lead + [D, F]), (b + "/" + mlp + "/Dense_0/bias", lead + [F]),
                   (b + "/" + mlp + "/Dense_1/kernel", lead + [F, D]), (b + "/" + mlp + "/Dense_1/bias", lead + [D])]
    arrays += [("Transformer/encoder_norm/scale", [D]), ("Transformer/encoder_norm/bias", [D])]
    if pool == "map":
        m = "MAPHead_0"
        arrays.append((m + "/probe", [1, 1, D]))
        for w in ("query", "key", "value"):
            arrays += [(m + "/MultiHeadDotProductAttention_0/" + w + "/kernel", [D, H, dh]),
                       (m + "/MultiHeadDotProductAttention_0/" + w + "/bias", [H, dh])]
        arrays += [(m + "/MultiHeadDotProductAttention_0/out/kernel", [H, dh, D]),
                   (m + "/MultiHeadDotProductAttention_0/out/bias", [D]),
                   (m + "/LayerNorm_0/scale", [D]), (m + "/LayerNorm_0/bias", [D]),
                   (m + "/MlpBlock_0/Dense_0/kernel", [D, F]), (m + "/MlpBlock_0/Dense_0/bias", [F]),
                   (m + "/MlpBlock_0/Dense_1/kernel", [F, D]), (m + "/MlpBlock_0/Dense_1/bias", [D])]
    arrays += [("head/kernel", [D, BV_K]), ("head/bias", [BV_K])]
    return [(prefix + name, shape) for name, shape in arrays]


def big_vision_npz(arrays, method, extra=(), descr="<f4"):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", method) as z:
        for k, (name, shape) in enumerate(list(arrays) + list(extra)):
            count = 1
            for d in shape:
                count *= d
            values = [((k * 31 + i * 7) % 17 - 8) / 8.0 for i in range(count)]
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, npy(shape, values, descr))
    return b.getvalue()


def seeds_big_vision():
    out("big_vision", "cls_perblock_stored.npz",
        big_vision_npz(big_vision_arrays(1, "cls", False, False, ""), zipfile.ZIP_STORED))
    out("big_vision", "map_scan_params_deflated.npz",
        big_vision_npz(big_vision_arrays(2, "map", True, False, "params/"), zipfile.ZIP_DEFLATED,
                       extra=[("opt/state/step", [1])]))
    out("big_vision", "legacy_cls_opt_target.npz",
        big_vision_npz(big_vision_arrays(1, "cls", False, True, "opt/target/"), zipfile.ZIP_DEFLATED))
    out("big_vision", "legacy_cls_scan_f16.npz",
        big_vision_npz(big_vision_arrays(1, "cls", True, True, ""), zipfile.ZIP_STORED, descr="<f2"))


def timm_vit(depth=2, D=8, F=16, p=2, C=1, K=3, grid=2, pool="cls", block="classic", qk_norm=False,
             pre_logits=0, posemb=True, metadata=None):
    """A safetensors file of a tiny ViT under timm's names (F16 elements, made-up values), for infer_shape."""
    t = [("patch_embed.proj.weight", [D, C, p, p]), ("patch_embed.proj.bias", [D])]
    if pool == "cls":
        t.append(("cls_token", [1, 1, D]))
    if posemb:
        t.append(("pos_embed", [1, grid * grid + (1 if pool == "cls" else 0), D]))
    for i in range(depth):
        b = "blocks.%d." % i
        t += [(b + "norm1.weight", [D]), (b + "norm1.bias", [D])]
        if block == "classic":
            t += [(b + "attn.qkv.weight", [3 * D, D]), (b + "attn.qkv.bias", [3 * D]),
                  (b + "attn.proj.weight", [D, D]), (b + "attn.proj.bias", [D]),
                  (b + "norm2.weight", [D]), (b + "norm2.bias", [D]),
                  (b + "mlp.fc1.weight", [F, D]), (b + "mlp.fc1.bias", [F]),
                  (b + "mlp.fc2.weight", [D, F]), (b + "mlp.fc2.bias", [D])]
            if qk_norm:
                t += [(b + "attn.q_norm.weight", [4]), (b + "attn.k_norm.weight", [4])]
        else:
            t += [(b + "in_proj.weight", [3 * D + F, D]), (b + "out_proj.weight", [D, D + F])]
            if qk_norm:
                t += [(b + "q_norm.weight", [4]), (b + "k_norm.weight", [4])]
    if pool == "map":
        t += [("attn_pool.latent", [1, 1, D]), ("attn_pool.q.weight", [D, D]), ("attn_pool.kv.weight", [2 * D, D])]
    t += [("fc_norm.weight" if pool == "gap_fc_norm" else "norm.weight", [D]),
          ("fc_norm.bias" if pool == "gap_fc_norm" else "norm.bias", [D])]
    if pre_logits:
        t += [("pre_logits.fc.weight", [pre_logits, D]), ("pre_logits.fc.bias", [pre_logits])]
    t += [("head.weight", [K, pre_logits or D]), ("head.bias", [K])]
    tensors = []
    for name, shape in t:
        n = 1
        for d in shape:
            n *= d
        tensors.append((name, "F16", shape, struct.pack("<%dH" % n, *[(0x3c00 + 37 * k) & 0x7bff for k in range(n)])))
    return safetensors(tensors, metadata)


def seeds_infer_shape():
    meta = {"vitscale.heads": "2", "vitscale.mlp_activation": "gelu_erf", "vitscale.norm_centered": "true",
            "vitscale.resolution": "4"}
    out("infer_shape", "classic_cls_meta.safetensors", timm_vit(metadata=meta))
    out("infer_shape", "classic_cls_timm.safetensors", timm_vit())
    out("infer_shape", "map_depth1_meta.safetensors", timm_vit(depth=1, pool="map", metadata=meta))
    out("infer_shape", "gap_fc_norm_pre_logits.safetensors", timm_vit(pool="gap_fc_norm", pre_logits=6, qk_norm=True))
    out("infer_shape", "parallel_qk_norm_sincos.safetensors",
        timm_vit(block="parallel", qk_norm=True, pool="gap", posemb=False,
                 metadata={"vitscale.heads": "2", "vitscale.resolution": "8", "vitscale.norm_centered": "false",
                           "vitscale.mlp_activation": "gelu_tanh"}))


def idx(type_byte, dims, data):
    return bytes([0, 0, type_byte, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


def seeds_idx():
    images = idx(8, [2, 3, 4], bytes(range(24)))
    labels = idx(8, [5], bytes([0, 9, 3, 1, 7]))
    out("idx", "images.idx3", images)
    out("idx", "labels.idx1", labels)
    out("idx", "images.idx3.gz", gzip.compress(images, mtime=0))
    out("idx", "labels.idx1.gz", gzip.compress(labels, mtime=0))
    out("idx", "labels_255.idx1", idx(8, [3], bytes([0, 255, 128])))
    out("idx", "float_images.idx3", idx(0x0D, [1, 1, 1], struct.pack(">f", 1.0)))


if __name__ == "__main__":
    for r in ("safetensors", "npz", "idx", "image", "big_vision", "infer_shape", "checkpoint"):
        os.makedirs(os.path.join(HERE, "corpus", r), exist_ok=True)
        os.makedirs(os.path.join(HERE, "regressions", r), exist_ok=True)
    seeds_safetensors()
    seeds_npz()
    seeds_idx()
    seeds_image()
    seeds_big_vision()
    seeds_infer_shape()
