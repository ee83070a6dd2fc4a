"""Fashion-MNIST's IDX files (plain or gzip, as Debian's dataset-fashion-mnist ships them) as numpy arrays:
the one reader of the Python peers (examples/train_torch.py, tests/reference/timm_roundtrip.py)."""
import gzip
import os

import numpy as np


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(folder, split):
    """(images [n, 28, 28] uint8, labels [n] uint8) of split "train" or "test"."""
    prefix = "train" if split == "train" else "t10k"

    def path(kind):
        p = os.path.join(folder, f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte")
        return p if os.path.exists(p) else p + ".gz"

    return read_idx(path("images")), read_idx(path("labels"))
