#!/usr/bin/python3
"""The GEMM shapes of bench_gemm.cpp (ViT-B/16 and ViT-Ti/16 at batch 8) through torch.matmul, for
comparison: fp32 and bf16 inputs, GFLOP/s, median of several repetitions after a warm-up. Prints a table.

    /usr/bin/python3 benchmarks/gemm/bench_gemm_torch.py [--threads 2] [--reps 7]   # Debian's python3 has torch
"""
import argparse
import statistics
import time

import torch

SHAPES = [
    ("ViT-B/16 qkv", 1576, 768, 2304),
    ("ViT-B/16 fc1", 1576, 768, 3072),
    ("ViT-B/16 fc2", 1576, 3072, 768),
    ("ViT-Ti/16 qkv", 1576, 192, 576),
    ("ViT-Ti/16 fc1", 1576, 192, 768),
    ("ViT-Ti/16 fc2", 1576, 768, 192),
]


def gflops(m, k, n, dtype, reps):
    gen = torch.Generator().manual_seed(0)
    a = (torch.rand(m, k, generator=gen) * 2 - 1).to(dtype)
    b = (torch.rand(k, n, generator=gen) * 2 - 1).to(dtype)
    for _ in range(2):
        torch.matmul(a, b)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - start)
    return 2.0 * m * k * n / statistics.median(times) * 1e-9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"median of {args.reps} after 2 warm-up calls; GFLOP/s")
    print(f"{'model':<14} {'MxKxN':<17} {'fp32':>8} {'bf16':>8} {'bf16/fp32':>10}")
    for name, m, k, n in SHAPES:
        f = gflops(m, k, n, torch.float32, args.reps)
        h = gflops(m, k, n, torch.bfloat16, args.reps)
        print(f"{name:<14} {f'{m}x{k}x{n}':<17} {f:8.1f} {h:8.1f} {h / f:10.2f}")


if __name__ == "__main__":
    main()
