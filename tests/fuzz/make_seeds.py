#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<reader>/), each file well under 20 kB.

Run from anywhere: python3 tests/fuzz/make_seeds.py. Needs only the Python standard library; the .npz
seeds are cut from tests/golden/big_vision/formats.npz (written by numpy) and the safetensors seed
python_mixed.safetensors is copied from tests/golden/io/."""
import gzip
import io
import json
import os
import shutil
import struct
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")


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
    for r in ("safetensors", "npz", "idx"):
        os.makedirs(os.path.join(HERE, "corpus", r), exist_ok=True)
        os.makedirs(os.path.join(HERE, "regressions", r), exist_ok=True)
    seeds_safetensors()
    seeds_npz()
    seeds_idx()
