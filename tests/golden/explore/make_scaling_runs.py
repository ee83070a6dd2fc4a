#!/usr/bin/env python3
"""Writes scaling_runs.csv: synthetic (model, compute, error) runs drawn from known saturating power laws
E = a*(C + d)^(-b) + c (Zhai et al. 2022, Eq. 1), for examples/scaling_fit's test and the demonstration figure.

Three model sizes, each trained for 8 budgets of images seen (geometric, x2 apart: 2^14 .. 2^21 images); compute
C = training FLOPs per image x images, with the FLOPs per image of the Fashion-MNIST ViT (4x128) scaled up for
the larger shapes. The error of each run is its shape's law plus Gaussian noise of sd 0.004 (Python's random,
seed 22). A larger shape starts slower (larger d) and saturates lower (smaller c), so the shapes cross and the
compute-optimal envelope passes from one to the next.

    python3 tests/golden/explore/make_scaling_runs.py > tests/golden/explore/scaling_runs.csv
"""
import random

# name: (training FLOPs per image, a, b, c, d)  -- the truth the test recovers
LAWS = {
    "tiny":  (0.30e9, 5.0e4, 0.40, 0.14, 0.0),
    "small": (1.20e9, 6.0e5, 0.45, 0.10, 2.0e13),
    "base":  (4.80e9, 8.0e6, 0.50, 0.07, 1.5e14),
}
SIGMA = 0.004


def main():
    rng = random.Random(22)
    print("model,images,compute,error")
    for name, (flops, a, b, c, d) in LAWS.items():
        for k in range(14, 22):
            images = 2 ** k
            compute = flops * images
            error = a * (compute + d) ** (-b) + c + rng.gauss(0.0, SIGMA)
            print(f"{name},{images},{compute:.6g},{error:.6f}")


if __name__ == "__main__":
    main()
