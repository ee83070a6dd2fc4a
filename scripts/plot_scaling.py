#!/usr/bin/env python3
"""Draws the scaling study's figures (issue 22, item 5) as PNG and SVG:

    law     examples/scaling_fit's curves CSV (--out) and, for the legend, its parameters CSV (--params): each
            group's points, its fitted saturating law E = a(C + d)^-b + c with the confidence band of the mean,
            the compute-optimal envelope (the best run at or below each compute) and the log-log line through it
            (Zhai et al. 2022, Figure 2; Smith et al. 2023, Figure 2), on log-log axes.
    memory  examples/explore_configs --grid --csv: training memory per device against depth x width, one panel
            per optimizer (and precision), each cell marked as fitting the device memory or not (Scaling ViT
            section 3.6's "fits with Adafactor but not with Adam").

    python3 scripts/plot_scaling.py law curves.csv --params params.csv --out benchmarks/scaling/law
    python3 scripts/plot_scaling.py memory grid.csv --out benchmarks/scaling/memory_map [--mlp-ratio 4 --head-dim 64]

Needs matplotlib (Debian: python3-matplotlib; run with /usr/bin/python3).
"""
import argparse
import collections
import csv
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402


def fail(message):
    raise SystemExit(f"plot_scaling: {message}")


def read_csv(path, needed):
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                fail(f"{path}: no column {', '.join(missing)} (is this the right CSV?)")
            rows = list(reader)
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    if not rows:
        fail(f"{path}: no rows")
    return rows


def save(fig, base):
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    for ext in ("png", "svg"):
        fig.savefig(f"{base}.{ext}")
    print(f"wrote {base}.png and {base}.svg")


def plain(v):
    """A number for a legend: 3 significant digits, powers of ten as 1.2e13."""
    return f"{v:.3g}".replace("e+", "e")


# ------------------------------------------------------------------------------------------------------------
# law

def plot_law(args):
    rows = read_csv(args.curves, ["group", "kind", "x", "y", "lower", "upper"])
    by_kind = collections.defaultdict(lambda: collections.defaultdict(list))
    groups = []
    for r in rows:
        by_kind[r["kind"]][r["group"]].append(r)
        if r["kind"] == "point" and r["group"] not in groups:
            groups.append(r["group"])
    params = collections.defaultdict(dict)
    level = None
    if args.params:
        for r in read_csv(args.params, ["group", "law", "parameter", "value", "standard_error"]):
            params[r["group"]][r["parameter"]] = (float(r["value"]), float(r["standard_error"]))
            level = float(r["level"]) if r.get("level") else level

    fig, ax = plt.subplots(figsize=(8.5, 6.2), dpi=120)
    points = [float(r["y"]) for g in by_kind["point"].values() for r in g]
    floor = min(points) / 3  # a band whose lower edge is <= 0 cannot be drawn on a log axis: clipped here
    colors = {g: f"C{i % 10}" for i, g in enumerate(groups)}
    for g in groups:
        color = colors[g]
        pts = by_kind["point"][g]
        ax.scatter([float(r["x"]) for r in pts], [float(r["y"]) for r in pts], color=color, s=22, zorder=3)
        fit = by_kind["fit"].get(g)
        label = g
        # A fit whose exponent's standard error exceeds the exponent is not determined by its points: its band
        # spans the whole figure and would hide every other curve, so it is left out, and the legend says so.
        undetermined = False
        if g in params and "b" in params[g]:
            b, c = params[g]["b"], params[g]["c"]
            label = f"{g}: b = {b[0]:.2f} ± {b[1]:.2f}, c = {plain(c[0])} ± {plain(c[1])}"
            undetermined = not b[1] < abs(b[0])
            if undetermined:
                label += " (b undetermined: no band)"
        if fit:
            x = [float(r["x"]) for r in fit]
            ax.plot(x, [float(r["y"]) for r in fit], color=color, lw=1.6, label=label,
                    ls=":" if undetermined else "-")
            if not undetermined:
                ax.fill_between(x, [max(floor, float(r["lower"])) for r in fit], [float(r["upper"]) for r in fit],
                                color=color, alpha=0.15, lw=0)
        else:
            ax.plot([], [], color=color, marker="o", ls="none", label=f"{g} (no fit)")
    frontier = [r for g in by_kind["frontier"].values() for r in g]
    if frontier:
        frontier.sort(key=lambda r: float(r["x"]))
        fx, fy = [float(r["x"]) for r in frontier], [float(r["y"]) for r in frontier]
        ax.plot(fx + [max(float(r["x"]) for r in rows)], fy + fy[-1:], color="black", lw=0.8, alpha=0.6,
                drawstyle="steps-post", zorder=2)
        ax.scatter([float(r["x"]) for r in frontier], [float(r["y"]) for r in frontier], s=70, facecolors="none",
                   edgecolors="black", lw=1.0, zorder=4)
    line = by_kind["envelope_fit"].get("envelope")
    if line:
        x = [float(r["x"]) for r in line]
        label = "log-log line through the envelope"
        if "beta" in params.get("envelope", {}):
            beta = params["envelope"]["beta"]
            label += f": slope β = {beta[0]:.3f} ± {beta[1]:.3f}"
        ax.plot(x, [float(r["y"]) for r in line], color="black", ls="--", lw=1.2, label=label)
        ax.fill_between(x, [float(r["lower"]) for r in line], [float(r["upper"]) for r in line], color="black",
                        alpha=0.07, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    # The points set the vertical range: a law extrapolated below the smallest budgets can climb far above any
    # error a run can have (past 1, where the points would be squeezed into the bottom of the figure); such a
    # curve leaves through the top of the frame instead.
    ax.set_ylim(min(points) / 1.2, max(points) * 1.2)
    xs = [float(r["x"]) for r in rows]
    ax.set_xlim(min(xs), max(xs))
    # Error rates read better as plain numbers (0.2, 0.3) than as powers of ten: 1-2-3-5 ticks per decade.
    lo, hi = ax.get_ylim()
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in (1, 1.5, 2, 3, 4, 5, 6, 7, 8) if lo <= m * 10.0 ** e <= hi]
    ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(args.xlabel)
    ax.set_ylabel(args.ylabel)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", color="black", lw=0.8, alpha=0.8, mfc="none", mec="black", ms=8))
    labels.append("compute-optimal envelope: the best run at or below each compute")
    band = f"{100 * level:.0f}%" if level else "the"
    ax.set_title(args.title, fontsize=10)
    fig.tight_layout()
    # The legend below the axes, where it hides no curve.
    fig.legend(handles, labels, fontsize=7.5, loc="lower center", ncol=2,
               title=f"lines: fitted a·(x + d)^(−b) + c per model (b, c ± their standard errors); shaded: {band} "
                     "confidence band of the mean",
               title_fontsize=7.5, frameon=False)
    fig.subplots_adjust(bottom=0.1 + 0.045 * math.ceil(len(labels) / 2))
    save(fig, args.out or os.path.splitext(args.curves)[0])


# ------------------------------------------------------------------------------------------------------------
# memory

def plot_memory(args):
    rows = read_csv(args.grid, ["depth", "width", "mlp_dim", "heads", "precision", "optimizer",
                                "mem_total_per_device", "device_memory", "fits", "params"])
    if args.mlp_ratio:
        rows = [r for r in rows if int(r["mlp_dim"]) == round(args.mlp_ratio * int(r["width"]))]
    if args.head_dim:
        rows = [r for r in rows if int(r["width"]) == args.head_dim * int(r["heads"])]
    if not rows:
        fail(f"{args.grid}: no shape with MLP = {args.mlp_ratio} x width and width = {args.head_dim} x heads "
             "(--mlp-ratio 0 / --head-dim 0 keep all)")
    panels = list(dict.fromkeys((r["optimizer"], r["precision"]) for r in rows))
    depths = sorted({int(r["depth"]) for r in rows})
    widths = sorted({int(r["width"]) for r in rows})
    cells = {}
    for r in rows:
        key = (r["optimizer"], r["precision"], int(r["depth"]), int(r["width"]))
        if key in cells:
            fail(f"{args.grid}: several shapes at depth {key[2]}, width {key[3]} ({key[0]}, {key[1]}); choose one "
                 "with --mlp-ratio and --head-dim")
        cells[key] = r
    gib = 1024.0 ** 3
    device = float(rows[0]["device_memory"]) / gib
    fitting = [float(r["mem_total_per_device"]) / gib for r in rows if r["fits"] == "1"]
    # Cells that fit are coloured by their memory (a light colour map, dark text); those that do not are grey
    # with red text, so that "fits or not" reads at a glance and the numbers stay legible on every cell.
    norm = LogNorm(vmin=min(fitting) if fitting else device / 100, vmax=device)
    cmap = plt.get_cmap("YlGnBu")
    first = rows[0]

    fig, axes = plt.subplots(1, len(panels), figsize=(1.6 + 4.6 * len(panels), 5.3), dpi=120, squeeze=False,
                             sharey=True)
    for ax, (opt, prec) in zip(axes[0], panels):
        colours = [[(1, 1, 1, 1)] * len(widths) for _ in depths]
        for i, d in enumerate(depths):
            for j, w in enumerate(widths):
                r = cells.get((opt, prec, d, w))
                if r is None:
                    continue
                m = float(r["mem_total_per_device"]) / gib
                fits = r["fits"] == "1"
                colours[i][j] = cmap(0.6 * norm(m)) if fits else (0.85, 0.85, 0.85, 1)
                text = f"{m:.1f} GiB\n{float(r['params']) / 1e6:.0f}M" + ("" if fits else "\ntoo big")
                ax.text(j, i, text, ha="center", va="center", fontsize=6.8, color="black" if fits else "#b00000",
                        fontweight="normal" if fits else "bold")
        ax.imshow(colours, origin="lower", aspect="auto")
        ax.set_xticks(range(len(widths)))
        ax.set_xticklabels([str(w) for w in widths])
        ax.set_yticks(range(len(depths)))
        ax.set_yticklabels([str(d) for d in depths])
        ax.set_xticks([x + 0.5 for x in range(len(widths) - 1)], minor=True)
        ax.set_yticks([y + 0.5 for y in range(len(depths) - 1)], minor=True)
        ax.grid(True, which="minor", color="white", lw=1.5)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("width (MLP = 4 x width, 64 per head)" if args.mlp_ratio == 4 and args.head_dim == 64
                      else "width")
        n_fit = sum(1 for k, r in cells.items() if k[:2] == (opt, prec) and r["fits"] == "1")
        n_all = sum(1 for k in cells if k[:2] == (opt, prec))
        ax.set_title(f"{opt}, {prec}: {n_fit} of {n_all} shapes fit", fontsize=9.5)
    axes[0][0].set_ylabel("depth (blocks)")
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=matplotlib.colors.ListedColormap(
        cmap([0.6 * k / 255 for k in range(256)])))
    bar = fig.colorbar(mappable, ax=axes[0].tolist(), shrink=0.9, pad=0.02)
    ticks = [t for t in (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256) if norm.vmin <= t <= norm.vmax]
    bar.set_ticks(ticks)
    bar.set_ticklabels([f"{t:g}" for t in ticks])
    bar.ax.minorticks_off()
    bar.set_label(f"training memory per device, GiB (grey: over {device:.0f} GiB)")
    fig.suptitle(f"Which shapes fit {device:.0f} GiB per device: patch {first['patch']} at {first['resolution']} px, "
                 f"batch {first['batch']} per step, mesh {first['mesh_data']}x{first['mesh_model']}\n"
                 "memory: parameters, gradients, optimizer state and activations kept for backward; "
                 "M: parameters in millions", fontsize=9)
    save(fig, args.out or os.path.splitext(args.grid)[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    sub = parser.add_subparsers(dest="figure", required=True)
    law = sub.add_parser("law", help="fitted laws, points, bands and the compute-optimal envelope")
    law.add_argument("curves", help="scaling_fit --out CSV")
    law.add_argument("--params", help="scaling_fit --params CSV (parameters in the legend)")
    law.add_argument("--out", help="output path without extension (default: next to the CSV)")
    law.add_argument("--xlabel", default="training compute (FLOPs)")
    law.add_argument("--ylabel", default="test error")
    law.add_argument("--title", default="Saturating power law per model and the compute-optimal envelope")
    law.set_defaults(func=plot_law)
    mem = sub.add_parser("memory", help="the explorer's memory map (explore_configs --grid --csv)")
    mem.add_argument("grid", help="explore_configs --grid --csv CSV")
    mem.add_argument("--out", help="output path without extension (default: next to the CSV)")
    mem.add_argument("--mlp-ratio", type=float, default=4, help="keep shapes with MLP = this x width (0: all)")
    mem.add_argument("--head-dim", type=int, default=64, help="keep shapes with width = this x heads (0: all)")
    mem.set_defaults(func=plot_memory)
    args = parser.parse_args()
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
