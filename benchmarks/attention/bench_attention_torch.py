#!/usr/bin/env python3
"""PyTorch eager attention (q @ k^T * scale, softmax, @ v), forward and backward, at the shapes of
bench_attention.cpp, on 2 threads: the peer the issue's targets name (PyTorch 1.13 on the CPU).

FLOPs counted as in bench_attention: forward 4*B*H*N*N*d, backward 2.5x forward.

    python3 benchmarks/attention/bench_attention_torch.py [repeats]
"""
import statistics
import sys
import time

import torch


def median_seconds(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(f"PyTorch {torch.__version__} eager attention, {torch.get_num_threads()} threads, median of {repeats} runs")
    print("FLOPs: forward 4*B*H*N*N*d, backward 2.5x forward\n")
    print("| B | H | N | d | pass | dtype | ms | GFLOP/s |")
    print("|---|---|---|---|---|---|---:|---:|")
    for n in (197, 577):
        b, h, d = 8, 12, 64
        flops = 4.0 * b * h * n * n * d
        scale = d ** -0.5
        for dtype in (torch.float32, torch.bfloat16):
            # timm's layout: [B, H, N, d] after the qkv reshape and permute.
            q, k, v = (torch.randn(b, h, n, d, dtype=dtype, requires_grad=True) for _ in range(3))
            dout = torch.randn(b, h, n, d, dtype=dtype)

            def forward():
                with torch.no_grad():
                    return (q @ k.transpose(-2, -1) * scale).softmax(dim=-1) @ v

            def backward():
                # The forward graph is rebuilt each time (PyTorch frees it after backward); its time is
                # measured above and subtracted.
                out = (q @ k.transpose(-2, -1) * scale).softmax(dim=-1) @ v
                out.backward(dout)

            tf = median_seconds(forward, repeats)
            tfb = median_seconds(backward, repeats)
            tb = max(tfb - tf, 1e-9)
            name = str(dtype).replace("torch.", "")
            print(f"| {b} | {h} | {n} | {d} | forward | {name} | {tf * 1e3:.2f} | {flops / tf * 1e-9:.1f} |")
            print(f"| {b} | {h} | {n} | {d} | backward | {name} | {tb * 1e3:.2f} | {2.5 * flops / tb * 1e-9:.1f} |")


if __name__ == "__main__":
    main()
