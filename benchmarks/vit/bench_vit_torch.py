#!/usr/bin/env python3
"""Whole-model ViT peers for bench_vit: PyTorch + timm (fp32 and bf16 autocast, forward and training step)
and ONNX Runtime (fp32 forward of the same timm model exported with torch.onnx.export), on a fixed number
of threads. Prints a table (images/s, ms/iter, GFLOP/s, peak RSS) and optionally writes it as JSON.

    /work/venv/bin/python benchmarks/vit/bench_vit_torch.py                     # the default configuration
    /work/venv/bin/python benchmarks/vit/bench_vit_torch.py --quick --models vit_tiny_patch16_224   # smoke check
    /work/venv/bin/python benchmarks/vit/bench_vit_torch.py --no-onnx --json /tmp/vit_torch.json

Default configuration: timm vit_base_patch16_224 (ViT-B/16) at batch 1 and 8, vit_tiny_patch16_224
(ViT-Ti/16) at batch 8, 224 px, random weights (pretrained=False), dropout and drop-path 0.
  - torch forward: model.eval(), torch.inference_mode(); fp32, and bf16 via
    torch.autocast('cpu', dtype=torch.bfloat16) entered around each iteration;
  - torch training step: model.train(), zero_grad, forward, softmax cross-entropy, backward,
    torch.optim.AdamW step (torch defaults); fp32 and bf16 autocast (weights and optimizer stay fp32);
  - ONNX Runtime: fp32 forward, CPUExecutionProvider, ORT_ENABLE_ALL, intra_op_num_threads=--threads,
    inter_op_num_threads=1, ORT_SEQUENTIAL; the model is exported to a temporary directory.

Threads: every row runs in a fresh subprocess with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS
set to --threads and torch.set_num_threads(--threads). Debian's torch does its fp32 GEMMs in the system BLAS
(OpenBLAS, pthreads) and everything else on OpenMP threads; with OpenMP threads spinning between parallel
regions the two pools fight over the cores (ViT-B/16 fp32 forward at batch 1 ran ~3.5x slower on the 2-core
machine), so the workers get OMP_WAIT_POLICY=PASSIVE unless --omp-wait-policy says otherwise.

Memory: the fresh process per row makes its peak RSS (ru_maxrss) its own; the table gives that peak minus
the RSS just before the model (or ONNX Runtime session) was built, and the absolute peak. The parent never
imports torch or onnxruntime, because Linux carries the parent's RSS at spawn into a child's ru_maxrss.

Timing: --warmup iterations (and at least --warmup-time seconds of them), then iterations until both
--min-iters iterations and --min-time seconds are reached; the median iteration time is reported.

FLOPs per image (the formula bench_vit uses), N = tokens including the class token, F = MLP width:
    forward = 2*patches*(C*P^2)*D + depth*(2*N*D*3D + 2*N*D*D + 4*N*D*F + 4*N^2*D) + 2*D*classes
    training step = 3*forward - patch embedding
"""
import argparse
import contextlib
import ctypes
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SHORT_NAMES = {"vit_base_patch16_224": "ViT-B/16", "vit_tiny_patch16_224": "ViT-Ti/16",
               "vit_small_patch16_224": "ViT-S/16", "vit_large_patch16_224": "ViT-L/16"}
DEFAULT_MODELS = ["vit_base_patch16_224", "vit_tiny_patch16_224"]
DEFAULT_BATCHES = {"vit_base_patch16_224": [1, 8], "vit_tiny_patch16_224": [8]}
DROPOUT_OFF = dict(drop_rate=0.0, pos_drop_rate=0.0, proj_drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0)
RESULT_TAG = "BENCH_VIT_RESULT "


# ----------------------------------------------------------------------------------------------- helpers
def short(model):
    return SHORT_NAMES.get(model, model)


def proc_status_mib(field):
    """A kB field of /proc/self/status (VmRSS: current RSS, VmHWM: peak RSS of this address space), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def rss_mib():
    return proc_status_mib("VmRSS")


def peak_rss_mib():
    """ru_maxrss, MiB. Linux carries the maximum of the process image before exec into it, i.e. the RSS of the
    parent at spawn: the parent therefore never imports torch, so that this stays far below any worker's peak
    (VmHWM, which exec resets, is recorded alongside as a cross-check)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        name = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags"))
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
        return f"{name} ({os.cpu_count()} logical CPUs; {' '.join(isa)})"
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def loaded_library(fragment):
    """Real path of the first shared library mapped into this process whose path contains `fragment`."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and fragment in parts[5]:
                    return os.path.realpath(parts[5])
    except OSError:
        pass
    return None


def model_dims(model):
    """The numbers the FLOP formula needs, read from a timm VisionTransformer."""
    pe = model.patch_embed
    p = pe.patch_size[0] if isinstance(pe.patch_size, (tuple, list)) else pe.patch_size
    return dict(patches=pe.num_patches, channels=pe.proj.in_channels, patch=p, dim=model.embed_dim,
                depth=len(model.blocks), mlp=model.blocks[0].mlp.fc1.out_features, classes=model.num_classes,
                tokens=pe.num_patches + model.num_prefix_tokens,
                image=list(model.pretrained_cfg.get("input_size", (3, 224, 224))),
                params=sum(t.numel() for t in model.parameters()))


def vit_flops(d):
    """Forward FLOPs per image by the formula of the module docstring; returns (forward, training, parts)."""
    n, dim, f = d["tokens"], d["dim"], d["mlp"]
    patch = 2.0 * d["patches"] * (d["channels"] * d["patch"] ** 2) * dim
    block = 2.0 * n * dim * 3 * dim + 2.0 * n * dim * dim + 4.0 * n * dim * f + 4.0 * n * n * dim
    head = 2.0 * dim * d["classes"]
    forward = patch + d["depth"] * block + head
    return forward, 3.0 * forward - patch, dict(patch=patch, blocks=d["depth"] * block, head=head)


def measure(step, warmup, warmup_time, min_time, min_iters):
    """Warm up, then time `step` until min_iters iterations and min_time seconds; returns (times, warm-ups)."""
    done, start = 0, time.perf_counter()
    while done < warmup or time.perf_counter() - start < warmup_time:
        step()
        done += 1
    times, start = [], time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times, done


def timing_result(times, warmups, batch):
    med = statistics.median(times)
    return dict(median_s=med, mean_s=statistics.fmean(times), min_s=min(times), max_s=max(times),
                iters=len(times), warmup_iters=warmups, images_per_s=batch / med)


def emit(result):
    sys.stdout.flush()
    print(RESULT_TAG + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------- subprocess workers
def worker_torch(spec):
    """One torch configuration: spec has model, batch, precision (fp32|bf16), mode (forward|train)."""
    import torch
    import torch.nn.functional as F
    import timm

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    baseline = rss_mib()
    model = timm.create_model(spec["model"], pretrained=False, **DROPOUT_OFF)
    dims = model_dims(model)
    batch = spec["batch"]
    x = torch.randn(batch, *dims["image"])
    bf16 = spec["precision"] == "bf16"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    if spec["mode"] == "forward":
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                out = model(x)
            return out
    else:
        model.train()
        labels = torch.randint(0, dims["classes"], (batch,))
        opt = torch.optim.AdamW(model.parameters())

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                out = model(x)
                loss = F.cross_entropy(out, labels)
            loss.backward()
            opt.step()
            return out

    out = step()
    out_dtype = str(out.dtype).replace("torch.", "")
    times, warmups = measure(step, spec["warmup"], spec["warmup_time"], spec["min_time"], spec["min_iters"])
    result = timing_result(times, warmups, batch)
    result.update(dims=dims, baseline_rss_mib=baseline, peak_rss_mib=peak_rss_mib(),
                  vmhwm_mib=proc_status_mib("VmHWM"), output_dtype=out_dtype,
                  torch_threads=torch.get_num_threads(), blas=loaded_library("blas"))
    emit(result)


def worker_ort(spec):
    """ONNX Runtime fp32 forward of an exported model at one batch size."""
    import numpy as np
    import onnxruntime as ort

    baseline = rss_mib()
    so = ort.SessionOptions()
    so.intra_op_num_threads = spec["threads"]
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(spec["onnx"], so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((spec["batch"], *spec["image"]), dtype=np.float32)

    def step():
        return sess.run(None, {name: x})

    times, warmups = measure(step, spec["warmup"], spec["warmup_time"], spec["min_time"], spec["min_iters"])
    result = timing_result(times, warmups, spec["batch"])
    result.update(baseline_rss_mib=baseline, peak_rss_mib=peak_rss_mib(), vmhwm_mib=proc_status_mib("VmHWM"),
                  providers=sess.get_providers())
    emit(result)


def worker_bf16_check(spec):
    """Run one autocast forward and one autocast training step with ONEDNN_VERBOSE=1 (set by the parent) and a
    dispatch mode that records the input dtype of every matmul/convolution aten op; the parent reads oneDNN's
    verbose lines between the markers printed here."""
    import torch
    import torch.nn.functional as F
    import timm
    from torch.utils._python_dispatch import TorchDispatchMode

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = timm.create_model(spec["model"], pretrained=False, **DROPOUT_OFF)
    dims = model_dims(model)
    x = torch.randn(spec["batch"], *dims["image"])
    labels = torch.randint(0, dims["classes"], (spec["batch"],))
    libc = ctypes.CDLL(None)

    def mark(text):  # keep Python's and oneDNN's (C stdio) output in order
        sys.stdout.flush()
        libc.fflush(None)
        print(f"BENCH_VIT_MARK {text}", flush=True)
        libc.fflush(None)

    def numel(shape):
        n = 1
        for s in shape:
            n *= s
        return n

    class MatmulDtypes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.flops = {}
            self.calls = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            flop = None
            if name in ("mm", "addmm", "bmm", "baddbmm"):
                a, b = (tensors[-2], tensors[-1])
                flop = 2.0 * numel(a.shape) * b.shape[-1]
                key_dtype = a.dtype
            elif name == "convolution":
                inp, w = tensors[0], tensors[1]
                out_numel = inp.shape[0] * w.shape[0] * numel(
                    (inp.shape[i + 2] - w.shape[i + 2]) // args[3][i] + 1 for i in range(len(w.shape) - 2))
                flop = 2.0 * out_numel * numel(w.shape[1:])
                key_dtype = inp.dtype
            elif name == "linear":  # seen whole under inference_mode (not decomposed into addmm)
                flop, key_dtype = 2.0 * numel(tensors[0].shape) * tensors[1].shape[0], tensors[0].dtype
            elif name == "matmul":
                flop, key_dtype = 2.0 * numel(tensors[0].shape) * tensors[1].shape[-1], tensors[0].dtype
            elif name == "convolution_backward":
                flop, key_dtype = 0.0, tensors[0].dtype
            if flop is not None:
                key = f"{name}:{str(key_dtype).replace('torch.', '')}"
                self.calls[key] = self.calls.get(key, 0) + 1
                self.flops[key] = self.flops.get(key, 0.0) + flop
            return func(*args, **(kwargs or {}))

    report = {}
    model.eval()
    mark("forward-begin")
    with MatmulDtypes() as m, torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    mark("forward-end")
    report["forward"] = dict(calls=m.calls, flops=m.flops, output_dtype=str(out.dtype))
    model.train()
    opt = torch.optim.AdamW(model.parameters())
    mark("train-begin")
    with MatmulDtypes() as m:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
    mark("train-end")
    report["train"] = dict(calls=m.calls, flops=m.flops, output_dtype=str(loss.dtype))
    emit(report)


def worker_info(spec):
    """Versions, the BLAS library torch resolves to, and the FLOP-formula dimensions of each model."""
    import torch
    import timm

    torch.set_num_threads(spec["threads"])
    torch.matmul(torch.ones(64, 64), torch.ones(64, 64))  # map the BLAS library, to name it
    onednn = next((l.split(" v", 1)[1].split()[0] for l in torch.__config__.show().splitlines() if "MKL-DNN" in l),
                  "?")
    versions = dict(python=platform.python_version(), torch=torch.__version__, timm=timm.__version__,
                    onednn_in_torch=onednn, blas=loaded_library("blas"))
    dims = {m: model_dims(timm.create_model(m, pretrained=False, **DROPOUT_OFF)) for m in spec["models"]}
    emit(dict(versions=versions, dims=dims, torch_threads=torch.get_num_threads()))


def worker_export(spec):
    emit(export_onnx(spec["model"], spec["opset"], spec["dir"], spec["threads"]))


def worker_main(spec):
    {"torch": worker_torch, "ort": worker_ort, "bf16check": worker_bf16_check, "info": worker_info,
     "export": worker_export}[spec["kind"]](spec)


# ------------------------------------------------------------------------------------------------- parent
def worker_env(threads, wait_policy):
    """The environment of every worker: one thread count for OpenMP (torch, oneDNN), OpenBLAS and MKL."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    if wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = wait_policy.upper()
    return env


def run_worker(spec, env, extra_env=None):
    env = dict(env, **(extra_env or {}))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec)],
                          env=env, capture_output=True, text=True)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if proc.returncode != 0 or result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise RuntimeError(f"worker exited with {proc.returncode}: " + " | ".join(tail))
    return result, proc.stdout


def summarize_onednn(lines):
    """Histogram of oneDNN primitives executed: 'kind impl (dtypes)' -> (count, total ms)."""
    hist = {}
    for line in lines:
        f = line.split(",")
        if len(f) < 7 or f[0] not in ("onednn_verbose", "dnnl_verbose") or f[1] != "exec":
            continue
        kind, impl, descs = f[3], f[4], f[6]
        dtypes = sorted({d.split(":")[0].split("_", 1)[1] for d in descs.split() if "_" in d.split(":")[0]})
        key = f"{kind} {impl} ({'/'.join(dtypes)})"
        ms = float(f[-1]) if f[-1].replace(".", "", 1).isdigit() else 0.0
        count, total = hist.get(key, (0, 0.0))
        hist[key] = (count + 1, total + ms)
    return hist


def bf16_check(model, threads, env):
    result, stdout = run_worker(dict(kind="bf16check", model=model, batch=1, threads=threads), env,
                                {"ONEDNN_VERBOSE": "1", "DNNL_VERBOSE": "1"})
    sections, current = {}, None
    for line in stdout.splitlines():
        if line.startswith("BENCH_VIT_MARK "):
            tag = line.split()[1]
            current = tag[:-len("-begin")] if tag.endswith("-begin") else None
            if current:
                sections[current] = []
        elif current:
            sections[current].append(line)
    out = {}
    for phase in ("forward", "train"):
        flops = result[phase]["flops"]
        total = sum(flops.values())
        bf16 = sum(v for k, v in flops.items() if k.endswith(":bfloat16"))
        out[phase] = dict(aten_calls=result[phase]["calls"], aten_flops=flops,
                          bf16_flop_share=bf16 / total if total else float("nan"),
                          output_dtype=result[phase]["output_dtype"],
                          onednn={k: dict(count=c, ms=round(t, 3))
                                  for k, (c, t) in summarize_onednn(sections.get(phase, [])).items()})
    return out


def export_onnx(model_name, opset, directory, threads):
    """Export the timm model (random weights, batch dimension dynamic), check ONNX Runtime against torch and
    list the operators ONNX Runtime executes after ORT_ENABLE_ALL optimisation."""
    import warnings

    import numpy as np
    import onnxruntime as ort
    import torch
    import timm

    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, **DROPOUT_OFF).eval()
    dims = model_dims(model)
    path = os.path.join(directory, f"{model_name}.onnx")
    x = torch.randn(2, *dims["image"])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings from timm's shape asserts
        torch.onnx.export(model, x, path, opset_version=opset, do_constant_folding=True, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    export_s = time.perf_counter() - start

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(directory, f"{model_name}_profile")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    xb = torch.randn(3, *dims["image"])
    got = sess.run(None, {"images": xb.numpy()})[0]
    with torch.inference_mode():
        want = model(xb).numpy()
    profile = sess.end_profiling()
    ops = {}
    with open(profile) as f:
        for event in json.load(f):
            if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
                op = event.get("args", {}).get("op_name", "?")
                ops[op] = ops.get(op, 0) + 1
    return dict(path=path, opset=opset, export_s=export_s, size_mib=os.path.getsize(path) / 2 ** 20,
                max_abs_diff_vs_torch=float(np.abs(got - want).max()), max_abs_logit=float(np.abs(want).max()),
                ort_ops=dict(sorted(ops.items(), key=lambda kv: -kv[1])), image=dims["image"])


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(rows):
    header = (f"{'engine':<12} {'model':<10} {'prec':<5} {'mode':<8} {'batch':>5} {'images/s':>9} {'ms/iter':>9} "
              f"{'GFLOP/s':>8} {'peakΔ MiB':>10} {'peak MiB':>9} {'iters':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        if r.get("error"):
            print(f"{r['engine']:<12} {short(r['model']):<10} {r['precision']:<5} {r['mode']:<8} {r['batch']:>5} "
                  f"FAILED: {r['error']}")
            continue
        print(f"{r['engine']:<12} {short(r['model']):<10} {r['precision']:<5} {r['mode']:<8} {r['batch']:>5} "
              f"{r['images_per_s']:9.2f} {r['ms_per_iter']:9.1f} {r['gflop_per_s']:8.1f} "
              f"{fmt(r.get('peak_delta_mib'), '10.0f')} {fmt(r.get('peak_rss_mib'), '9.0f')} {r['iters']:>6}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="timm model names")
    parser.add_argument("--batches", nargs="+", type=int, default=None,
                        help="batch sizes for every model (default: ViT-B/16 at 1 and 8, ViT-Ti/16 at 8, others 8)")
    parser.add_argument("--modes", nargs="+", default=["forward", "train"], choices=["forward", "train"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                        help="torch precisions (ONNX Runtime runs fp32 forward only)")
    parser.add_argument("--min-time", type=float, default=10.0, help="seconds of timed iterations per row")
    parser.add_argument("--min-iters", type=int, default=3, help="timed iterations per row, at least")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up iterations, at least")
    parser.add_argument("--warmup-time", type=float, default=3.0, help="seconds of warm-up, at least")
    parser.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active", "inherit"],
                        help="OMP_WAIT_POLICY of the workers (default passive: with active spinning, torch's "
                             "OpenMP threads and OpenBLAS's pthreads fight over the cores and fp32 runs several "
                             "times slower; 'inherit' leaves the variable as it is in this environment)")
    parser.add_argument("--opset", type=int, default=14, help="ONNX opset for torch.onnx.export")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--no-bf16-check", action="store_true", help="skip the oneDNN-verbose bf16 kernel check")
    parser.add_argument("--quick", action="store_true", help="tiny iteration counts: a smoke check, not a measurement")
    parser.add_argument("--json", metavar="PATH", help="also write the rows (and the run's details) as JSON")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._worker:
        worker_main(json.loads(args._worker))
        return
    if args.quick:
        args.warmup, args.warmup_time, args.min_time, args.min_iters = 1, 0.0, 0.0, 1

    # The parent imports neither torch nor onnxruntime (see peak_rss_mib): everything runs in workers.
    if not args.no_onnx and importlib.util.find_spec("onnxruntime") is None:
        sys.exit(f"error: onnxruntime is not installed for {sys.executable}.\n"
                 f"Install it with `{sys.executable} -m pip install onnxruntime`, "
                 "or pass --no-onnx to measure PyTorch only.")
    env = worker_env(args.threads, args.omp_wait_policy)
    info, _ = run_worker(dict(kind="info", models=args.models, threads=args.threads), env)
    versions = info["versions"]
    if not args.no_onnx:
        versions.update(onnxruntime=importlib.metadata.version("onnxruntime"),
                        numpy=importlib.metadata.version("numpy"))
    meta = dict(versions=versions, threads=args.threads, cpu=cpu_model(), quick=args.quick,
                omp_wait_policy=env.get("OMP_WAIT_POLICY", "(unset)"),
                loadavg_start=os.getloadavg(), started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                timing=dict(warmup=args.warmup, warmup_time=args.warmup_time, min_time=args.min_time,
                            min_iters=args.min_iters, statistic="median"))

    print("vitscale model benchmark peers: PyTorch + timm" + ("" if args.no_onnx else ", ONNX Runtime"))
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"CPU: {meta['cpu']}")
    print(f"threads: {args.threads} (torch.set_num_threads -> {info['torch_threads']}; OMP_NUM_THREADS, "
          f"OPENBLAS_NUM_THREADS, MKL_NUM_THREADS{'' if args.no_onnx else ', ORT intra_op_num_threads'}); "
          f"OMP_WAIT_POLICY={meta['omp_wait_policy']}; load average at start: "
          + " ".join(f"{v:.2f}" for v in meta["loadavg_start"]))
    print(f"timing: >= {args.warmup} warm-up iterations and >= {args.warmup_time:g} s of them, then >= "
          f"{args.min_iters} iterations and >= {args.min_time:g} s; median per iteration"
          + ("   [--quick: a smoke check, NOT a measurement]" if args.quick else ""))

    print("\nFLOPs per image (formula in the docstring):")
    flops = {}
    for model, d in info["dims"].items():
        fwd, train, parts = vit_flops(d)
        flops[model] = (fwd, train)
        print(f"  {short(model):<9} {d['image'][1]} px, N={d['tokens']}, D={d['dim']}, depth={d['depth']}, "
              f"F={d['mlp']}, {d['params'] / 1e6:.1f} M params: forward {fwd / 1e9:.3f} GFLOP "
              f"(patch embedding {parts['patch'] / 1e9:.3f}, blocks {parts['blocks'] / 1e9:.3f}, "
              f"head {parts['head'] / 1e9:.4f}); training step {train / 1e9:.3f} GFLOP")
    meta["flops_per_image"] = {m: dict(forward=f, train=t) for m, (f, t) in flops.items()}
    meta["dims"] = info["dims"]

    tmp = None if args.no_onnx else tempfile.TemporaryDirectory(prefix="bench_vit_onnx_")
    onnx_info = {}
    if tmp:
        print(f"\nONNX export (torch.onnx.export, opset {args.opset}, dynamic batch axis, constant folding), "
              f"to {tmp.name}:")
        for model in args.models:
            try:
                i, _ = run_worker(dict(kind="export", model=model, opset=args.opset, dir=tmp.name,
                                       threads=args.threads), env)
            except Exception as exc:  # report it and go on with torch
                i = dict(error=str(exc))
                print(f"  {short(model)}: export FAILED: {i['error']}")
            else:
                print(f"  {short(model)}: {i['size_mib']:.1f} MiB, exported in {i['export_s']:.1f} s; ORT vs torch "
                      f"fp32 (batch 3) max |diff| {i['max_abs_diff_vs_torch']:.2e} (max |logit| "
                      f"{i['max_abs_logit']:.2f})\n    ORT operators run after ORT_ENABLE_ALL (batch 3, per "
                      f"forward): " + ", ".join(f"{k} x{v}" for k, v in i["ort_ops"].items()))
            onnx_info[model] = i
        meta["onnx"] = {m: {k: v for k, v in i.items() if k != "path"} for m, i in onnx_info.items()}

    if "bf16" in args.precisions and not args.no_bf16_check:
        print("\nbf16 autocast check (batch 1; one forward under inference_mode, one training step; dtypes of the "
              "aten matmul/conv ops; oneDNN primitives from ONEDNN_VERBOSE=1):")
        meta["bf16_check"] = {}
        for model in args.models:
            try:
                check = bf16_check(model, args.threads, env)
            except Exception as exc:
                print(f"  {short(model)}: check FAILED: {exc}")
                continue
            meta["bf16_check"][model] = check
            for phase, c in check.items():
                onednn_ms = sum(v["ms"] for v in c["onednn"].values())
                print(f"  {short(model)} {phase}: {100 * c['bf16_flop_share']:.1f}% of matmul/conv FLOPs with bf16 "
                      f"inputs; aten ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(c["aten_calls"].items())))
                print(f"    oneDNN primitives ({onednn_ms:.1f} ms in total, verbose on): "
                      + "; ".join(f"{k} x{v['count']}" for k, v in sorted(c["onednn"].items(),
                                                                         key=lambda kv: -kv[1]["count"])))

    rows = []
    print("\nrunning, one subprocess per row ...", flush=True)
    for model in args.models:
        fwd, train = flops[model]
        for batch in args.batches or DEFAULT_BATCHES.get(model, [8]):
            plan = []
            if "forward" in args.modes:
                plan += [("torch", p, "forward") for p in args.precisions]
                if "path" in onnx_info.get(model, {}):
                    plan.append(("onnxruntime", "fp32", "forward"))
            if "train" in args.modes:
                plan += [("torch", p, "train") for p in args.precisions]
            for engine, precision, mode in plan:
                spec = dict(kind="torch" if engine == "torch" else "ort", model=model, batch=batch,
                            precision=precision, mode=mode, threads=args.threads, warmup=args.warmup,
                            warmup_time=args.warmup_time, min_time=args.min_time, min_iters=args.min_iters)
                if engine == "onnxruntime":
                    spec.update(onnx=onnx_info[model]["path"], image=onnx_info[model]["image"])
                row = dict(engine=engine, model=model, precision=precision, mode=mode, batch=batch)
                try:
                    res, _ = run_worker(spec, env)
                except Exception as exc:
                    row["error"] = str(exc)
                else:
                    per_image = fwd if mode == "forward" else train
                    row.update(images_per_s=res["images_per_s"], ms_per_iter=res["median_s"] * 1e3,
                               gflop_per_s=per_image * batch / res["median_s"] * 1e-9,
                               peak_delta_mib=res["peak_rss_mib"] - res["baseline_rss_mib"],
                               peak_rss_mib=res["peak_rss_mib"], baseline_rss_mib=res["baseline_rss_mib"],
                               vmhwm_mib=res["vmhwm_mib"], iters=res["iters"], warmup_iters=res["warmup_iters"],
                               mean_ms=res["mean_s"] * 1e3, min_ms=res["min_s"] * 1e3, max_ms=res["max_s"] * 1e3,
                               gflop_per_image=per_image * 1e-9)
                    for key in ("output_dtype", "torch_threads"):
                        if key in res:
                            row[key] = res[key]
                rows.append(row)
                status = (f"FAILED: {row['error']}" if "error" in row else
                          f"{row['images_per_s']:.2f} images/s, median {row['ms_per_iter']:.1f} ms of "
                          f"{row['iters']} (min {row['min_ms']:.1f}, max {row['max_ms']:.1f})")
                print(f"  {engine} {short(model)} {precision} {mode} batch {batch}: {status}", flush=True)

    meta["loadavg_end"] = os.getloadavg()
    print()
    print_table(rows)
    print("\nimages/s = batch / median iteration time; GFLOP/s from the formula (training step = 3x forward - patch "
          "embedding);\npeakΔ = peak RSS (ru_maxrss) minus the RSS just before the model/session was built, peak = "
          "ru_maxrss, each row in a fresh process;\nload average at end: "
          + " ".join(f"{v:.2f}" for v in meta["loadavg_end"]))
    mismatched = [r for r in rows if "vmhwm_mib" in r and abs(r["vmhwm_mib"] - r["peak_rss_mib"]) > 2]
    if mismatched:
        print(f"note: ru_maxrss and VmHWM differ by > 2 MiB in {len(mismatched)} row(s) (see the JSON)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=2)
        print(f"wrote {args.json}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
