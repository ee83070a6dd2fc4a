#!/usr/bin/env python3
"""Oracle for vitscale's safetensors reader and writer (include/vitscale/io/safetensors.hpp), using the
`safetensors` package that PyTorch and timm use.

    python3 tests/reference/safetensors_reference.py            # writes tests/golden/io/python_mixed.safetensors
    python3 tests/reference/safetensors_reference.py check FILE  # checks a file vitscale's writer made

The written file holds small arange-based tensors whose values tests/io/safetensors.cpp knows exactly (they
are spelled out there too): F32, BF16, F16 (with the special values of binary16), F64 (with a value where
rounding to float first and then to bf16 gives a different answer than rounding once), I64, a scalar
(shape []), a zero-size tensor, and metadata.

Rerunning may reorder the metadata keys in the header (the package keeps them in a hash map); the
tensors and their bytes do not change.

The check mode loads FILE with safetensors.torch.load_file and compares it with what the test
"writer output for Python" in tests/io/safetensors.cpp writes when VITSCALE_SAFETENSORS_FOR_PYTHON=FILE.
"""
import math
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "golden", "io"))


def python_tensors():
    f16 = [0.0, 1.0, -2.0, 65504.0, 2.0 ** -14, 2.0 ** -24, math.inf, -math.inf, math.nan, -0.0]
    return {
        "f32": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) * 0.25 - 3,
        "bf16": ((torch.arange(10, dtype=torch.float32) - 5) * 0.5).to(torch.bfloat16),
        "f16": torch.tensor(f16, dtype=torch.float16).reshape(2, 5),
        # 1 + 2^-8 + 2^-30: once-rounded to bf16 it is 1 + 2^-7; via float (1 + 2^-8, a tie) it would be 1.
        "f64": torch.tensor([1.0 / 3.0, -0.1, 1.0 + 2.0 ** -8 + 2.0 ** -30], dtype=torch.float64),
        "i64": torch.arange(5, dtype=torch.int64) - 2,
        "scalar": torch.tensor(7.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }


def write():
    os.makedirs(DATA, exist_ok=True)
    path = os.path.join(DATA, "python_mixed.safetensors")
    save_file(python_tensors(), path, metadata={"format": "pt", "source": "tests/reference/safetensors_reference.py"})
    # Read back through the package, so that a file it cannot open is never committed.
    back = load_file(path)
    for name, t in python_tensors().items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
        assert torch.equal(back[name].nan_to_num(), t.nan_to_num()), name
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def check(path):
    # What tests/io/safetensors.cpp writes: see the test "writer output for Python".
    want = {
        "weight": torch.arange(15, dtype=torch.float32).reshape(3, 5) * 0.25 - 3,
        "bias": ((torch.arange(7, dtype=torch.float32) - 3) * 0.5).to(torch.bfloat16),
        "scalar": torch.tensor(-1.5, dtype=torch.float32),
        "empty": torch.zeros(4, 0, dtype=torch.bfloat16),
        "steps": torch.tensor([1, -2, 3], dtype=torch.int32),
    }
    got = load_file(path)
    assert list(got) and set(got) == set(want), f"tensors {sorted(got)}, want {sorted(want)}"
    for name, t in want.items():
        g = got[name]
        assert g.dtype == t.dtype, f"{name}: dtype {g.dtype}, want {t.dtype}"
        assert g.shape == t.shape, f"{name}: shape {tuple(g.shape)}, want {tuple(t.shape)}"
        assert torch.equal(g, t), f"{name}: {g} != {t}"
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta == {"format": "pt", "written_by": "vitscale"}, meta
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    assert n % 8 == 0, f"header length {n} is not a multiple of 8"
    print(f"{path}: {len(got)} tensors and metadata as vitscale wrote them; header {n} bytes")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    elif len(sys.argv) == 1:
        write()
    else:
        sys.exit(__doc__)
