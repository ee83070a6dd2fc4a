#!/usr/bin/env python3
"""A sweep of examples/train runs (issue 22, item 4): a grid of shapes x step budgets x seeds written as one
train command per run, run here one after another or handed to a real scheduler, and collected into one CSV
that examples/scaling_fit reads. Standard library only.

    scripts/sweep.py plan DIR --steps 100,400,1600 --seeds 0,1 [--shape NAME[=TRAIN ARGS] ...] [--batch 64]
                     [--shape-steps NAME=50,200,800 ...]
                     [--train-size N,...] [--threads 2] [--extra=--lr=1e-3 ...] [--grid grid.json]
                     [--save-every 200] [--slurm] [--sbatch=--time=04:00:00 ...] [--mpirun] [--print]
    scripts/sweep.py run DIR [--only 0,3] [--dry-run]      here, one run after another; resumable
    scripts/sweep.py collect DIR [--out DIR/runs.csv] [--print]

plan writes DIR/runs.json (the grid and every run's parameters), DIR/commands.txt (one train command per run,
in array-index order), and with --slurm DIR/sweep.slurm (a job array, one task per command line: sbatch it),
with --mpirun DIR/sweep.appfile (an Open MPI application context, one process per run, all at once:
mpirun --app DIR/sweep.appfile). Both schedulers' tasks call `sweep.py run DIR --only I`, which runs line I,
so that a finished run is skipped and a preempted one resumed wherever it runs. Each run writes DIR/RUN/
metrics.csv, model.safetensors, log.txt and, when stopped or with --save-every, state.safetensors.

A run is complete when its metrics CSV's last row is at its step budget and its parameter file exists; run
skips complete runs, resumes a run from its training state where one was left (train --resume: by a stop, or
every --save-every steps), and starts the others afresh. A SIGINT or SIGTERM stops the current run cleanly (train saves its state and exits
75) and ends the sweep; run again to go on. On Slurm, sweep.slurm requeues a task that stopped that way
(use #SBATCH --signal=TERM@120 through --sbatch to be warned before the time limit).

The shape axis: a "shape" is a name and the train arguments that select it. examples/train compiles a ladder
of Fashion-MNIST shapes (examples/model_ladder.hpp: xxs, xs, s, m; train --help describes them), chosen with
--model: --shape "xs=--model xs" --shape "m=--model m"; the default, fmnist, passes none (train's default, s).
--init-from a catalogue checkpoint can be named the same way: --shape "ti=--init-from ti.safetensors".
A shape may have step budgets of its own (--shape-steps m=50,100,200): a larger model reaches a given compute in
fewer steps, so each shape's budgets can cover the compute where it matters (Scaling ViT, Figure 2), and the
shapes without their own take --steps.
The grid file (JSON) holds the same keys as the options: {"shapes": {"fmnist": []}, "steps": [100, 400],
"seeds": [0], "batch": [64], "train_size": [], "threads": 2, "extra": [], "warmup_fraction": 0.1,
"save_every": 0, "train": "build/examples/train", "flops_per_image": {"fmnist": 2.9e8}, "shape_steps": {}};
options override it.

collect writes one row per complete run: the run's parameters (run, model, steps, seed, batch, train_size),
the last row of its metrics CSV, and error = 1 - test_accuracy, images = step x batch. compute is the metrics
CSV's own column (train writes the accounting's training FLOPs per image x images seen, for whichever shape
ran); only for metrics without one is it images x flops_per_image[model], where the grid gives it.
"""
import argparse
import csv
import datetime
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TRAIN = os.path.join(REPO, "build", "examples", "train")
EXIT_STOPPED = 75  # train's status after a clean stop by SIGINT / SIGTERM (examples/tool_runtime.hpp)


def fail(message):
    raise SystemExit(f"sweep: {message}")


def log(message):
    print(f"[sweep {datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"'{text}' is not a comma-separated list of integers")
    if not values:
        fail(f"'{text}' is an empty list")
    return values


# ------------------------------------------------------------------------------------------------------------
# plan

def grid_from(args):
    grid = {}
    if args.grid:
        try:
            with open(args.grid) as f:
                grid = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            fail(f"cannot read the grid file {args.grid}: {e}")
        known = {"shapes", "steps", "seeds", "batch", "train_size", "threads", "extra", "warmup_fraction",
                 "save_every", "train", "flops_per_image", "shape_steps"}
        unknown = sorted(set(grid) - known)
        if unknown:
            fail(f"{args.grid}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if args.shape:
        grid["shapes"] = {}
        for s in args.shape:
            name, _, train_args = s.partition("=")
            if not name or "/" in name or " " in name:
                fail(f"--shape '{s}': expected NAME or NAME=TRAIN ARGS (a name without spaces or slashes)")
            grid["shapes"][name] = shlex.split(train_args)
    if args.shape_steps:
        grid["shape_steps"] = {}
        for s in args.shape_steps:
            name, _, steps = s.partition("=")
            if not name or not steps:
                fail(f"--shape-steps '{s}': expected NAME=STEPS,STEPS,...")
            grid["shape_steps"][name] = int_list(steps)
    for key, value in (("steps", args.steps), ("seeds", args.seeds), ("batch", args.batch),
                       ("train_size", args.train_size)):
        if value is not None:
            grid[key] = int_list(value)
    for key, value in (("threads", args.threads), ("warmup_fraction", args.warmup_fraction),
                       ("save_every", args.save_every), ("train", args.train)):
        if value is not None:
            grid[key] = value
    if args.extra:
        grid["extra"] = [a for e in args.extra for a in shlex.split(e)]
    grid.setdefault("shapes", {"fmnist": []})
    grid.setdefault("seeds", [0])
    grid.setdefault("batch", [128])
    grid.setdefault("train_size", [])
    grid.setdefault("threads", 0)
    grid.setdefault("extra", [])
    grid.setdefault("warmup_fraction", 0.1)
    grid.setdefault("save_every", 0)
    grid.setdefault("train", DEFAULT_TRAIN)
    grid.setdefault("flops_per_image", {})
    grid.setdefault("shape_steps", {})
    if not isinstance(grid["shapes"], dict) or not grid["shapes"]:
        fail("\"shapes\" must map names to lists of train arguments")
    unknown = sorted(set(grid["shape_steps"]) - set(grid["shapes"]))
    if unknown:
        fail(f"step budgets for {', '.join(unknown)}, which the grid's shapes ({', '.join(grid['shapes'])}) do not "
             "name")
    if not grid.get("steps") and not all(s in grid["shape_steps"] for s in grid["shapes"]):
        fail("no step budgets: --steps 100,400,1600 (or \"steps\" in the grid file)")
    budgets = [s for lst in [grid.get("steps") or []] + list(grid["shape_steps"].values()) for s in lst]
    if any(s <= 0 for s in budgets) or any(b <= 0 for b in grid["batch"]):
        fail("step budgets and batch sizes must be positive")
    if not 0 <= grid["warmup_fraction"] < 1:
        fail("the warmup fraction must lie in [0, 1)")
    grid["train"] = os.path.abspath(grid["train"])
    return grid


def shape_budgets(grid, shape):
    return grid.get("shape_steps", {}).get(shape) or grid["steps"]


def plan_runs(grid):
    """Every run of the grid, shape-major: shape, steps (the shape's own budgets, else the grid's), batch, train
    size, seed."""
    runs = []
    sizes = grid["train_size"] or [0]
    combos = ((shape, steps, batch, size, seed) for shape in grid["shapes"]
              for steps, batch, size, seed in itertools.product(shape_budgets(grid, shape), grid["batch"], sizes,
                                                                grid["seeds"]))
    for shape, steps, batch, size, seed in combos:
        name = f"{shape}_s{steps}"
        if len(grid["batch"]) > 1:
            name += f"_b{batch}"
        if grid["train_size"]:
            name += f"_n{size}"
        name += f"_seed{seed}"
        args = list(grid["shapes"][shape]) + ["--steps", str(steps), "--batch", str(batch), "--seed", str(seed)]
        if size:
            args += ["--train-size", str(size)]
        if grid["threads"]:
            args += ["--threads", str(grid["threads"])]
        args += grid["extra"]
        if not any(a == "--warmup" or a.startswith("--warmup=") for a in args):
            args += ["--warmup", str(int(round(steps * grid["warmup_fraction"])))]
        runs.append({"index": len(runs), "run": name, "model": shape, "steps": steps, "batch": batch,
                     "train_size": size, "seed": seed, "args": args})
    return runs


def run_files(folder, run):
    d = os.path.join(folder, run["run"])
    return {"dir": d, "csv": os.path.join(d, "metrics.csv"), "checkpoint": os.path.join(d, "model.safetensors"),
            "state": os.path.join(d, "state.safetensors"), "log": os.path.join(d, "log.txt")}


def command(grid, folder, run, resume=False):
    """The train command of `run` in the sweep folder `folder`, as a list of arguments."""
    f = run_files(folder, run)
    # The training state goes to the run's folder even without --save-every: a stop by a signal writes it.
    argv = [grid["train"]] + run["args"] + ["--csv", f["csv"], "--checkpoint", f["checkpoint"],
                                            "--train-checkpoint", f["state"]]
    if grid["save_every"]:
        argv += ["--save-every", str(grid["save_every"])]
    if resume:
        argv += ["--resume", f["state"]]
    return argv


def slurm_script(grid, folder, runs, sbatch):
    threads = grid["threads"] or 1
    lines = ["#!/bin/bash",
             f"# The sweep in {folder} as a Slurm job array: task I runs line I+1 of commands.txt through",
             "# sweep.py run --only I (skipped when complete, resumed from its training state when one was saved).",
             "# Submit with: sbatch " + os.path.join(folder, "sweep.slurm"),
             "#SBATCH --job-name=vitscale-sweep",
             f"#SBATCH --array=0-{len(runs) - 1}",
             "#SBATCH --ntasks=1",
             f"#SBATCH --cpus-per-task={threads}",
             f"#SBATCH --output={folder}/slurm-%A_%a.out",
             "#SBATCH --requeue"]
    lines += [f"#SBATCH {s}" for s in sbatch]
    lines += ["set -u",
              "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1} OMP_PROC_BIND=false OMP_WAIT_POLICY=PASSIVE",
              f"srun python3 {shlex.quote(os.path.abspath(__file__))} run "
              f"{shlex.quote(folder)} --only \"$SLURM_ARRAY_TASK_ID\"",
              "rc=$?",
              f"# {EXIT_STOPPED}: stopped by a signal with its state saved (preemption, the time limit): run it again.",
              f"if [ $rc -eq {EXIT_STOPPED} ]; then scontrol requeue \"${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}\"; fi",
              "exit $rc", ""]
    return "\n".join(lines)


def appfile(folder, runs):
    head = [f"# The sweep in {folder} for Open MPI: one process per run, all at once (mpirun --app this file).",
            "# Each run uses the --threads of the plan; give mpirun enough slots (--oversubscribe, --map-by).", ""]
    body = [f"-np 1 -x OMP_PROC_BIND=false -x OMP_WAIT_POLICY=PASSIVE python3 "
            f"{shlex.quote(os.path.abspath(__file__))} run {shlex.quote(folder)} --only {r['index']}" for r in runs]
    return "\n".join(head) + "\n".join(body) + "\n"


def write(path, text, show):
    with open(path, "w") as f:
        f.write(text)
    if show:
        print(f"--- {path}\n{text}", end="" if text.endswith("\n") else "\n")


def cmd_plan(args):
    grid = grid_from(args)
    folder = os.path.abspath(args.dir)
    os.makedirs(folder, exist_ok=True)
    runs = plan_runs(grid)
    manifest = os.path.join(folder, "runs.json")
    if os.path.exists(manifest) and not args.replan:
        with open(manifest) as f:
            old = json.load(f)
        if old.get("runs") != runs:
            fail(f"{manifest} holds another plan; a new one would renumber its runs (--replan replaces it)")
    counts = sorted({len(shape_budgets(grid, s)) for s in grid["shapes"]})
    budgets = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    axes = [f"{len(grid['shapes'])} shape{'s' if len(grid['shapes']) > 1 else ''}",
            f"{budgets} budget{'s' if counts[-1] > 1 else ''}" + (" each" if grid["shape_steps"] else "")]
    if len(grid["batch"]) > 1:
        axes.append(f"{len(grid['batch'])} batch sizes")
    if grid["train_size"]:
        axes.append(f"{len(grid['train_size'])} training-set sizes")
    axes.append(f"{len(grid['seeds'])} seed{'s' if len(grid['seeds']) > 1 else ''}")
    print(f"{len(runs)} runs ({' x '.join(axes)}) in {folder}")
    if not os.access(grid["train"], os.X_OK):
        print(f"note: {grid['train']} is not built yet (ninja -C BUILD train)")
    with open(manifest, "w") as f:
        json.dump({"grid": grid, "runs": runs}, f, indent=1)
        f.write("\n")
    write(os.path.join(folder, "commands.txt"),
          "".join(shlex.join(command(grid, folder, r)) + "\n" for r in runs), args.print)
    if args.slurm:
        write(os.path.join(folder, "sweep.slurm"), slurm_script(grid, folder, runs, args.sbatch or []), args.print)
    if args.mpirun:
        write(os.path.join(folder, "sweep.appfile"), appfile(folder, runs), args.print)
    written = ["runs.json", "commands.txt"] + (["sweep.slurm"] if args.slurm else []) + \
              (["sweep.appfile"] if args.mpirun else [])
    print(f"wrote {', '.join(written)} in {folder}; run here with: {sys.argv[0]} run {folder}")


# ------------------------------------------------------------------------------------------------------------
# run and collect

def load(folder):
    manifest = os.path.join(folder, "runs.json")
    try:
        with open(manifest) as f:
            plan = json.load(f)
    except OSError:
        fail(f"{folder} has no runs.json: plan the sweep first (sweep.py plan {folder} ...)")
    except json.JSONDecodeError as e:
        fail(f"{manifest}: {e}")
    return plan["grid"], plan["runs"]


def last_row(path):
    """The header and the last data row of a metrics CSV (None, None if it has no data row)."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
    except OSError:
        return None, None
    if len(rows) < 2:
        return None, None
    return rows[0], rows[-1]


def progress(folder, run):
    """(final step reached, row as a dict) of the run's metrics CSV; (0, None) if it has no row yet."""
    header, row = last_row(run_files(folder, run)["csv"])
    if row is None:
        return 0, None
    values = dict(zip(header, row))
    try:
        return int(values.get("step", "0")), values
    except ValueError:
        return 0, None


def complete(folder, run):
    step, _ = progress(folder, run)
    return step >= run["steps"] and os.path.exists(run_files(folder, run)["checkpoint"])


def select(runs, only):
    if only is None:
        return runs
    chosen = int_list(only)
    bad = [i for i in chosen if not 0 <= i < len(runs)]
    if bad:
        fail(f"--only {only}: the plan has runs 0..{len(runs) - 1}")
    return [runs[i] for i in chosen]


def cmd_run(args):
    folder = os.path.abspath(args.dir)
    grid, runs = load(folder)
    chosen = select(runs, args.only)
    if not args.dry_run and not os.access(grid["train"], os.X_OK):
        fail(f"{grid['train']} is not built (ninja -C BUILD train)")
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_PROC_BIND", "false")
    failed = []
    for k, run in enumerate(chosen, 1):
        f = run_files(folder, run)
        label = f"{k}/{len(chosen)} {run['run']}"
        if complete(folder, run):
            log(f"{label}: complete, skipped")
            continue
        resume = os.path.exists(f["state"])
        argv = command(grid, folder, run, resume)
        if args.dry_run:
            log(f"{label}: would {'resume' if resume else 'run'}: {shlex.join(argv)}")
            continue
        os.makedirs(f["dir"], exist_ok=True)
        log(f"{label}: {'resuming' if resume else 'running'} (log in {f['log']})")
        with open(f["log"], "a") as out:
            out.write(f"$ {shlex.join(argv)}\n")
            out.flush()
            child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            # A scheduler's SIGTERM reaches this process: pass it on so that train saves its state and stops.
            previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
            try:
                while True:
                    try:
                        rc = child.wait()
                        break
                    except KeyboardInterrupt:  # SIGINT reached the child too (same process group): wait for it
                        continue
            finally:
                signal.signal(signal.SIGTERM, previous)
        if rc == EXIT_STOPPED:
            log(f"{label}: stopped by a signal, state saved; run the sweep again to go on")
            return EXIT_STOPPED
        if rc != 0 or not complete(folder, run):
            log(f"{label}: failed (exit status {rc}); see {f['log']}")
            failed.append(run["run"])
            continue
        step, row = progress(folder, run)
        log(f"{label}: test accuracy {float(row['test_accuracy']):.4f} after {step} steps")
    if failed:
        log(f"{len(failed)} run(s) failed: {', '.join(failed)}")
        return 1
    return 0


def cmd_collect(args):
    folder = os.path.abspath(args.dir)
    grid, runs = load(folder)
    params = ["run", "model", "steps", "seed", "batch", "train_size"]
    metric_columns, rows, left_out = [], [], []
    for run in runs:
        step, row = progress(folder, run)
        if row is None or step < run["steps"]:
            left_out.append(run["run"])
            print(f"{run['run']}: unfinished (step {step} of {run['steps']}), left out")
            continue
        for c in row:
            if c not in metric_columns:
                metric_columns.append(c)
        out = {p: run[p] for p in params}
        out.update(row)
        try:
            accuracy = float(row["test_accuracy"])
        except (KeyError, ValueError):
            fail(f"{run_files(folder, run)['csv']}: no test_accuracy in its last row")
        out["error"] = f"{1 - accuracy:.6g}"
        out["images"] = step * run["batch"]
        flops = grid.get("flops_per_image", {}).get(run["model"])
        if not row.get("compute") and flops:
            out["compute"] = f"{out['images'] * float(flops):.6g}"
        rows.append(out)
    derived = ["error", "images"] + ([] if "compute" in metric_columns or not any("compute" in r for r in rows)
                                     else ["compute"])
    columns = params + [c for c in metric_columns if c not in params] + derived
    path = args.out or os.path.join(folder, "runs.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    if args.print:
        with open(path) as f:
            sys.stdout.write(f.read())
    if "compute" not in columns:
        print("note: no compute column (the metrics have none and the grid gives no flops_per_image)", file=sys.stderr)
    print(f"{len(rows)} run{'' if len(rows) == 1 else 's'} in {path}" + (f" ({len(left_out)} unfinished left out)" if left_out else ""))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="write the runs' commands (and a Slurm array script, an mpirun app file)")
    p.add_argument("dir", help="the sweep's output folder")
    p.add_argument("--grid", help="a JSON file with the grid (see above); options override it")
    p.add_argument("--shape", action="append", help="NAME or NAME=TRAIN ARGS; repeat for several (default fmnist)")
    p.add_argument("--steps", help="step budgets, e.g. 100,400,1600 (train --steps: the schedule's length)")
    p.add_argument("--shape-steps", action="append",
                   help="NAME=STEPS,...: a shape's own step budgets instead of --steps; repeat per shape")
    p.add_argument("--seeds", help="seeds, e.g. 0,1,2 (default 0)")
    p.add_argument("--batch", help="batch sizes (default 128)")
    p.add_argument("--train-size", help="class-balanced training-set sizes (train --train-size; default: all)")
    p.add_argument("--threads", type=int, help="train --threads of each run (default: train's)")
    p.add_argument("--warmup-fraction", type=float, help="--warmup as a fraction of the budget (default 0.1)")
    p.add_argument("--save-every", type=int, help="training state every this many steps, for resuming (default 0)")
    p.add_argument("--extra", action="append", help="more train arguments for every run, e.g. --extra=--lr=1e-3")
    p.add_argument("--train", help=f"the train program (default {DEFAULT_TRAIN})")
    p.add_argument("--slurm", action="store_true", help="also write DIR/sweep.slurm, a job array")
    p.add_argument("--sbatch", action="append", help="an #SBATCH line for it, e.g. --sbatch=--time=04:00:00")
    p.add_argument("--mpirun", action="store_true", help="also write DIR/sweep.appfile for mpirun --app")
    p.add_argument("--print", action="store_true", help="print the files written")
    p.add_argument("--replan", action="store_true", help="replace an existing plan in DIR")
    p.set_defaults(func=cmd_plan)
    r = sub.add_parser("run", help="run the planned runs here, one after another (complete ones are skipped)")
    r.add_argument("dir")
    r.add_argument("--only", help="these run indices (0-based, the lines of commands.txt), e.g. 3 or 0,2")
    r.add_argument("--dry-run", action="store_true", help="say what would run, run nothing")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("collect", help="the final row of every complete run, with its parameters, in one CSV")
    c.add_argument("dir")
    c.add_argument("--out", help="the CSV to write (default DIR/runs.csv)")
    c.add_argument("--print", action="store_true", help="print it")
    c.set_defaults(func=cmd_collect)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
