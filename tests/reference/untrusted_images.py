#!/usr/bin/env python3
"""Writes tests/golden/images/untrusted/: small hostile or damaged image files that classify (and
vitscale/data/image_file.hpp) must refuse with a clear error, each under 1 kB. Standard library only.

  pgm_16384.pgm         the 19-byte PGM header claiming 16384 x 16384 (stb_image decodes it as 800 MB of zeros)
  png_16384.png         a valid PNG whose IHDR claims 16384 x 16384 (268 Mpx, over the pixel limit)
  png_1x1_bomb.png      a 1 x 1 grey PNG whose image data inflates to 512 kB (stb_image keeps all of it)
  truncated.png         tests/golden/images/fmnist_boot.png cut to its first 1000 bytes
  jpeg_dht_302_codes.jpg  a JPEG whose Huffman table defines 302 codes (stb_image 2.27 writes past its tables):
                        copied from tests/fuzz/regressions/image/, where fuzz_image found it (not written here)
  truncated.jpg         tests/fuzz/corpus/image/rgb_16x16_444.jpg (make_jpeg_seeds.cpp) cut to 700 bytes (inside its compressed data)

Run from anywhere: python3 tests/reference/untrusted_images.py"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
OUT = os.path.join(ROOT, "tests", "golden", "images", "untrusted")


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, depth, colour, idat):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write(name, data):
    assert len(data) < 1024, name
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def read(*path):
    with open(os.path.join(ROOT, *path), "rb") as f:
        return f.read()


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    write("pgm_16384.pgm", b"P5\n16384 16384\n255\n")
    write("png_16384.png", png(16384, 16384, 8, 2, zlib.compress(b"\0" * 64, 9)))
    write("png_1x1_bomb.png", png(1, 1, 8, 0, zlib.compress(b"\0" * (1 << 19), 9)))
    write("truncated.png", read("tests", "golden", "images", "fmnist_boot.png")[:1000])
    write("truncated.jpg", read("tests", "fuzz", "corpus", "image", "rgb_16x16_444.jpg")[:700])
