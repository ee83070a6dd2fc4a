#!/usr/bin/env python3
"""Writes the two small test images of examples/classify (tests/golden/images/), from Fashion-MNIST's test set.

    python3 tests/reference/make_images.py [FASHION_MNIST_DIR]

fmnist_boot.png: test image 0 (an ankle boot), grey, upscaled 28 -> 112 px (PIL bicubic).
fmnist_pullover_rgb.png: test image 1 (a pullover), upscaled to 256 x 340 (larger than the 248 px timm resizes to, so that resizing downscales with antialiasing; not square, so that the shorter
side decides the resize and the centre crop drops rows) and tinted into colour, RGB (so that a 1-channel
model exercises the RGB -> grey conversion and a 3-channel one sees three different channels).
"""
import gzip
import os
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "golden", "images"))


def test_images(folder):
    with gzip.open(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        data = f.read()
    n = int.from_bytes(data[4:8], "big")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 28, 28)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    images = test_images(folder)
    os.makedirs(OUT, exist_ok=True)
    boot = Image.fromarray(images[0], mode="L").resize((112, 112), Image.BICUBIC)
    boot.save(os.path.join(OUT, "fmnist_boot.png"), optimize=True)
    grey = np.asarray(Image.fromarray(images[1], mode="L").resize((256, 340), Image.BICUBIC)).astype(np.float64)
    rgb = np.stack([grey, 0.75 * grey + 40.0, 255.0 - 0.6 * grey], axis=-1)
    rgb = np.rint(rgb / 4.0) * 4.0  # posterised to multiples of 4: a PNG under 30 kB
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB").save(
        os.path.join(OUT, "fmnist_pullover_rgb.png"), optimize=True)
    for name in ("fmnist_boot.png", "fmnist_pullover_rgb.png"):
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")


if __name__ == "__main__":
    main()
