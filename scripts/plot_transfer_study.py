#!/usr/bin/env python3
"""Draws scripts/transfer_study.sh's CSV: test accuracy on Fashion-MNIST classes 5-9 against the number of
downstream training images, one line per method (from scratch, fine-tuned, few-shot ridge regression, linear probe),
the mean over seeds with its spread. Writes PNG and SVG next to the CSV (or to --out).

    python3 scripts/plot_transfer_study.py benchmarks/transfer_study/transfer_study.csv

Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import collections
import csv
import math
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "scratch": "from scratch ({bwd} images fwd+bwd)",
    "finetune": "fine-tuned from classes 0-4 ({bwd} images fwd+bwd)",
    "probe": "linear probe on frozen features (n images fwd)",
    "fewshot": "few-shot ridge regression (n images fwd)",
}
STYLE = {"scratch": ("C3", "o"), "finetune": ("C0", "s"), "probe": ("C2", "^"), "fewshot": ("C1", "D")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--out", help="output path without extension (default: next to the CSV)")
    args = parser.parse_args()

    runs = collections.defaultdict(lambda: collections.defaultdict(list))
    compute = {}
    with open(args.csv) as f:
        for row in csv.DictReader(f):
            runs[row["method"]][int(row["train_size"])].append(float(row["test_accuracy"]))
            compute[row["method"]] = int(row["images_fwd_bwd"])
    if not runs:
        raise SystemExit(f"{args.csv}: no results")

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for method in ["finetune", "probe", "fewshot", "scratch"]:
        if method not in runs:
            continue
        sizes = sorted(runs[method])
        means = [100 * statistics.mean(runs[method][n]) for n in sizes]
        spread = [100 * statistics.stdev(runs[method][n]) if len(runs[method][n]) > 1 else 0 for n in sizes]
        color, marker = STYLE[method]
        ax.errorbar(sizes, means, yerr=spread, color=color, marker=marker, capsize=3,
                    label=LABELS[method].format(bwd=f"{compute[method]:,}"))
    ax.set_xscale("log")
    sizes = sorted({n for m in runs.values() for n in m})
    ax.set_xticks(sizes)
    ax.minorticks_off()
    ax.set_xticklabels([f"{n}\n({n // 5}/class)" for n in sizes])
    ax.set_xlabel("downstream training images (Fashion-MNIST classes 5-9)")
    ax.set_ylabel("test accuracy on classes 5-9 (%): mean, sd of seeds")
    low = min(100 * min(v) for m in runs.values() for v in m.values())
    ax.set_ylim(max(0, 10 * math.floor(low / 10) - 5), 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("Transfer from classes 0-4 vs training from scratch (ViT 4x128, 28 px)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    base = args.out or os.path.splitext(args.csv)[0]
    for ext in ("png", "svg"):
        fig.savefig(f"{base}.{ext}")
    print(f"wrote {base}.png and {base}.svg")


if __name__ == "__main__":
    main()
