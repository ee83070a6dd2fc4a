#!/usr/bin/env python3
"""Golden values for tests/eval/fewshot.cpp, from big_vision's own few-shot code (evaluators/fewshot_lsr.py).

    git clone https://github.com/google-research/big_vision            # or any checkout / bare git dir of it
    /work/venv/bin/python tests/reference/fewshot_reference.py --big-vision big_vision
                                                                       # writes tests/golden/eval/fewshot_*.json

big_vision's module imports its whole input pipeline (TensorFlow, tfds), so it is not imported: the functions the
few-shot accuracy is made of (`BIAS_CONSTANT`, `_precompute_cache`, `_eig_fewshot_acc_fn`, and `jit_cpu` /
`put_cpu` from utils.py) are taken out of the checkout's source with `ast` and executed as they are, with JAX
and numpy. The k-shot selection lives inside a method (`Evaluator.compute_fewshot_metrics`) that also reads data
sets; its two lines (a numpy `default_rng(seed)` permutation of each class's indices, and shots as prefixes of
these) are repeated here, and the script stops if the checkout's source no longer contains them.

The golden stores each seed's per-class orders: the test hands them to `fewshot_evaluate` as explicit orders, and
checks that vitscale's own draw (`fewshot_draw_orders`, numpy's SeedSequence + PCG64 + permutation redone in C++)
gives the same orders. numpy_permutations.json holds more of numpy's outputs for that: raw 64-bit draws and
permutations of several lengths, for seeds with one and two 32-bit words.

Each case is run twice, in separate processes: with JAX's default float32 (what big_vision computes) and with
JAX_ENABLE_X64=1 (float64, what vitscale computes). The test requires vitscale's counts of correct test examples
to equal the float64 ones for every L2 constant, shot and seed, and reports the float32 differences.

Features are clustered Gaussians (class centres plus noise) quantised to multiples of 1/16, stored as integers
(value = q / 16 is exact in float), so the committed files stay small and the test reads exactly these floats.
Cases: `main` (10 classes, D = 48, 30 training examples per class; 1-shot has N = 10 < D + 1 and takes
big_vision's x xᵀ branch, 5/10/25-shot take the xᵀ x branch) and `wide` (5 classes, D = 96: every shot count
takes the x xᵀ branch; 20-shot uses every training example of each class).
"""
import argparse
import ast
import json
import os
import subprocess
import sys
import types

import numpy as np

QUANT = 16.0
L2_REGS = [2.0 ** 10, 1.0]  # big_vision's default (configs/common_fewshot.py), and a weak one
SEEDS = 3

CASES = {
    # name: classes, dim, train per class, test per class, shots, centre scale, noise, data seed
    "main": dict(classes=10, dim=48, train_per_class=30, test_per_class=20, shots=[1, 5, 10, 25],
                 centre=0.55, noise=1.0, data_seed=2021),
    "wide": dict(classes=5, dim=96, train_per_class=20, test_per_class=20, shots=[1, 5, 10, 20],
                 centre=0.35, noise=1.0, data_seed=22),
}

SELECTION_LINES = [
    "rng = np.random.default_rng(seed)",
    "class_indices = [rng.permutation(np.where(labels_train == cls_i)[0])",
    "all_idx = [indices[:shots] for indices in class_indices]",
    "all_idx = np.concatenate(all_idx, axis=0)",
]


def read_source(big_vision, path):
    """A file of the checkout: a work tree, or a bare git directory (HEAD)."""
    plain = os.path.join(big_vision, path)
    if os.path.isfile(plain):
        with open(plain) as f:
            return f.read()
    return subprocess.run(["git", "--git-dir", big_vision, "show", "HEAD:" + path], check=True,
                          capture_output=True, text=True).stdout


def take(source, names):
    """The top-level definitions and assignments of `names` in `source`, as a module without decorators' imports."""
    tree = ast.parse(source)
    body = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            body.append(node)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in names for t in node.targets):
            body.append(node)
    found = {n.name if hasattr(n, "name") else n.targets[0].id for n in body}
    missing = set(names) - found
    if missing:
        sys.exit(f"big_vision's source has no {sorted(missing)}: the reference needs updating")
    return ast.Module(body=body, type_ignores=[])


def big_vision_functions(big_vision):
    import jax
    import jax.numpy as jnp
    utils = read_source(big_vision, "big_vision/utils.py")
    fewshot = read_source(big_vision, "big_vision/evaluators/fewshot_lsr.py")
    for line in SELECTION_LINES:
        if line not in fewshot:
            sys.exit(f"fewshot_lsr.py no longer contains {line!r}: the k-shot selection here needs updating")
    u = types.SimpleNamespace()
    exec(compile(take(utils, ["jit_cpu", "put_cpu"]), "big_vision/utils.py", "exec"), {"jax": jax}, vars(u))
    ns = {"jax": jax, "jnp": jnp, "np": np, "u": u}
    exec(compile(take(fewshot, ["BIAS_CONSTANT", "_precompute_cache", "_eig_fewshot_acc_fn"]),
                 "big_vision/evaluators/fewshot_lsr.py", "exec"), ns)
    return u, ns


def make_case(spec):
    rng = np.random.default_rng(spec["data_seed"])
    c, d = spec["classes"], spec["dim"]
    centres = spec["centre"] * rng.standard_normal((c, d))
    offsets = 0.5 * rng.standard_normal(d)  # features are not centred, as pooled ViT features are not
    scales = np.exp(0.4 * rng.standard_normal(d))  # nor of equal spread: whitening matters

    def draw(per_class):
        labels = np.repeat(np.arange(c), per_class)
        rng.shuffle(labels)
        x = centres[labels] + spec["noise"] * rng.standard_normal((len(labels), d))
        q = np.round((x * scales + offsets) * QUANT).astype(np.int64)
        return q, labels

    train_q, train_y = draw(spec["train_per_class"])
    test_q, test_y = draw(spec["test_per_class"])
    return train_q, train_y, test_q, test_y


def orders_of(train_y, classes, seed):
    # big_vision's compute_fewshot_metrics: one generator per seed, a permutation of each class's indices.
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.where(train_y == cls_i)[0]) for cls_i in range(classes)]


def compute(args):
    """Child process: the correct counts per (l2, shot, seed) for one case under the current JAX precision."""
    import jax
    u, ns = big_vision_functions(args.big_vision)
    spec = CASES[args.case]
    train_q, train_y, test_q, test_y = make_case(spec)
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    repr_train = (train_q / QUANT).astype(dtype)
    repr_test = (test_q / QUANT).astype(dtype)
    counts = [[[0] * SEEDS for _ in spec["shots"]] for _ in L2_REGS]
    for seed in range(SEEDS):
        class_indices = orders_of(train_y, spec["classes"], seed)
        for si, shots in enumerate(spec["shots"]):
            all_idx = np.concatenate([indices[:shots] for indices in class_indices], axis=0)
            x = u.put_cpu(repr_train[all_idx])
            y = u.put_cpu(train_y[all_idx])
            cache = ns["_precompute_cache"](x, y, spec["classes"])
            for li, l2 in enumerate(L2_REGS):
                acc = ns["_eig_fewshot_acc_fn"](cache, u.put_cpu(repr_test), u.put_cpu(test_y),
                                                u.put_cpu(dtype(l2)))
                acc = float(jax.device_get(acc))
                counts[li][si][seed] = int(round(acc * len(test_y)))
                assert abs(counts[li][si][seed] / len(test_y) - acc) < 1e-6
    json.dump({"counts": counts, "dtype": str(np.dtype(dtype)), "bias_constant": ns["BIAS_CONSTANT"]}, sys.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-vision", required=True, help="big_vision checkout (work tree or bare git dir)")
    parser.add_argument("--out", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "eval")))
    parser.add_argument("--compute", dest="case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        return compute(args)

    import jax
    os.makedirs(args.out, exist_ok=True)
    numpy_golden = {"source": f"numpy {np.__version__}", "seeds": [0, 1, 12345, 2 ** 33 + 7], "raw": [],
                    "lengths": [1, 2, 37, 500], "permutations": [], "sequential": []}
    for seed in numpy_golden["seeds"]:
        numpy_golden["raw"].append([str(v) for v in np.random.PCG64(seed).random_raw(4)])  # uint64 as strings
        numpy_golden["permutations"].append(
            [np.random.default_rng(seed).permutation(np.arange(n)).tolist() for n in numpy_golden["lengths"]])
        rng = np.random.default_rng(seed)  # one generator, several permutations: what big_vision does per class
        numpy_golden["sequential"].append([rng.permutation(np.arange(n)).tolist() for n in numpy_golden["lengths"]])
    with open(os.path.join(args.out, "numpy_permutations.json"), "w") as f:
        json.dump(numpy_golden, f, separators=(",", ":"))
        f.write("\n")
    for name, spec in CASES.items():
        runs = {}
        for x64 in ("0", "1"):
            env = dict(os.environ, JAX_ENABLE_X64=x64, JAX_PLATFORMS="cpu")
            out = subprocess.run([sys.executable, __file__, "--big-vision", args.big_vision, "--compute", name],
                                 env=env, check=True, capture_output=True, text=True).stdout
            runs[x64] = json.loads(out)
        assert runs["0"]["dtype"] == "float32" and runs["1"]["dtype"] == "float64"
        train_q, train_y, test_q, test_y = make_case(spec)
        golden = {
            "source": "big_vision/evaluators/fewshot_lsr.py (_precompute_cache, _eig_fewshot_acc_fn), "
                      f"jax {jax.__version__}, numpy {np.__version__}",
            "classes": spec["classes"],
            "dim": spec["dim"],
            "scale": 1.0 / QUANT,
            "shots": spec["shots"],
            "l2_regs": L2_REGS,
            "bias_constant": runs["1"]["bias_constant"],
            "train_features": train_q.reshape(-1).tolist(),
            "train_labels": train_y.tolist(),
            "test_features": test_q.reshape(-1).tolist(),
            "test_labels": test_y.tolist(),
            # orders[seed][class]: the permutation of that class's training indices big_vision draws
            "orders": [[o.tolist() for o in orders_of(train_y, spec["classes"], s)] for s in range(SEEDS)],
            # correct[l2][shot][seed]: correctly classified test examples
            "correct_float64": runs["1"]["counts"],
            "correct_float32": runs["0"]["counts"],
        }
        path = os.path.join(args.out, f"fewshot_{name}.json")
        with open(path, "w") as f:
            json.dump(golden, f, separators=(",", ":"))
            f.write("\n")
        n = len(test_y)
        print(f"{path}: test {n}; accuracy (float64, l2 = {L2_REGS[0]}) per shot, mean of seeds:",
              [round(sum(c) / (SEEDS * n), 3) for c in runs["1"]["counts"][0]],
              "float32 differs in", sum(a != b for la, lb in zip(runs["0"]["counts"], runs["1"]["counts"])
                                        for sa, sb in zip(la, lb) for a, b in zip(sa, sb)), "counts")


if __name__ == "__main__":
    main()
