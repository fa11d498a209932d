"""Inference throughput of numharden against PyTorch eager CPU (issue 2, item 10).

Usage (from the repository root; PyTorch is needed only here, never by numharden)::

    python bench/bench_inference.py                    # markdown table, batch 256
    python bench/bench_inference.py --json out.json    # also write the rows as JSON
    python bench/bench_inference.py --profile          # plus per-layer breakdown
    python bench/bench_inference.py --quick            # smoke run: batch 16, 1 repeat

Models: LeNet-5 on 1x28x28 with int4/ch weights and 4-bit activations (the shape of the
built-in model) and in fp32; ResNet-20 and ResNet-18 (CIFAR form) on 3x32x32 in fp32.
numharden runs its ordinary ``Model.forward`` (float32, batch norm folded, weights
decoded from their stored codes once and cached) with ``numharden.kernels.set_threads``.

The baseline is PyTorch eager in a *separate* worker process started with
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` at 1 GiB (so glibc does not
return and re-fault large activation buffers every call) -- a separate process also
keeps torch's OpenMP runtime apart from numba's. The torch nets are the independent
twins of ``tests/golden/torch_twins.py`` loaded with the same weights, in eval mode,
``channels_last``, under ``torch.inference_mode()``, threads set by
``torch.set_num_threads``. For nets with batch norm a second torch variant has conv+BN
fused by ``torch.fx.experimental.optimization.fuse`` (numharden folds BN too). An
activation-quantised net runs in torch as fp32 fake quantisation, which is what
numharden computes as well.

Timing: the JIT compile (numba: one small-batch call; torch: one full-batch call, since
oneDNN builds its primitives per shape) is excluded; then numharden and torch calls
alternate, repeat by repeat, so that load from other processes on a shared machine
hits both alike. Reported are medians over the repeats; the number of repeats adapts to
``--budget`` within ``[--min-repeats, --max-repeats]``. GFLOP/s counts 2 x MACs of conv
and linear layers only. ``numharden/torch`` > 1 means numharden is faster. ``max |dlogit|``
is the largest logit difference between the two on the benchmark batch (float32; for
the fake-quantised net a pre-activation at a rounding boundary may round to a
different 4-bit code, see tests/golden/make_golden.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_ENV = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}

CONFIGS = {
    "lenet5-w4a4": dict(arch="lenet5", shape=(1, 28, 28), weight_format="int4/ch", abits=4),
    "lenet5-fp32": dict(arch="lenet5", shape=(1, 28, 28), weight_format="fp32", abits=None),
    "resnet20-fp32": dict(arch="resnet20", shape=(3, 32, 32), weight_format="fp32", abits=None),
    "resnet18-fp32": dict(arch="resnet18", shape=(3, 32, 32), weight_format="fp32", abits=None),
}
NUM_CLASSES = 10


# ======================================================================================
# torch worker (separate process; imports torch, never numharden or numba)
# ======================================================================================
class _TorchSide:
    def __init__(self):
        import torch
        from torch.fx.experimental.optimization import fuse

        sys.path.insert(0, str(ROOT / "tests"))
        from golden.torch_twins import load_params, torch_net

        self.torch, self.fuse = torch, fuse
        self.load_params, self.torch_net = load_params, torch_net
        self.nets: dict = {}
        self.inputs: dict = {}
        torch.set_num_interop_threads(1)

    def setup(self, name, arch, shape, abits, params, x, fuse):
        torch = self.torch
        cl = torch.channels_last
        net = self.load_params(self.torch_net(arch, tuple(shape), NUM_CLASSES, abits), params)
        nets = {"eager": net.to(memory_format=cl)}
        has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        if fuse and has_bn:
            nets["fused"] = self.fuse(net, inplace=False).eval().to(memory_format=cl)
        self.nets[name] = nets
        self.inputs[name] = torch.from_numpy(x)
        return {"variants": list(nets), "torch": torch.__version__,
                "threads_max": torch.get_num_threads()}

    def version(self):
        return {"torch": self.torch.__version__}

    def _call(self, net, x):
        return net(x.contiguous(memory_format=self.torch.channels_last))

    def run(self, name, variant, threads, repeats, batch=None):
        torch = self.torch
        torch.set_num_threads(threads)
        net, x = self.nets[name][variant], self.inputs[name]
        if batch is not None:
            x = x[:batch]
        times = []
        with torch.inference_mode():
            for _ in range(repeats):
                t0 = time.perf_counter()
                y = self._call(net, x)
                times.append(time.perf_counter() - t0)
        return {"times": times, "logits": y.numpy().copy()}

    def profile(self, name, threads, batch, repeats):
        """Median wall time per conv/linear/batch-norm module (forward hooks)."""
        torch = self.torch
        torch.set_num_threads(threads)
        net, x = self.nets[name]["eager"], self.inputs[name][:batch]
        kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)
        times, start, handles = defaultdict(list), {}, []
        for mname, m in net.named_modules():
            if isinstance(m, kinds):
                handles.append(m.register_forward_pre_hook(
                    lambda mod, inp, mname=mname: start.__setitem__(mname, time.perf_counter())))
                handles.append(m.register_forward_hook(
                    lambda mod, inp, out, mname=mname: times[mname].append(
                        time.perf_counter() - start[mname])))
        with torch.inference_mode():
            self._call(net, x)  # warm-up at this batch size
            times.clear()
            total = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                self._call(net, x)
                total.append(time.perf_counter() - t0)
        for h in handles:
            h.remove()
        return {"layers": {k: statistics.median(v) for k, v in times.items()},
                "total": statistics.median(total)}


def _worker_main() -> None:
    """Serve pickled ``(method, kwargs)`` requests on stdin; replies on the real stdout."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything torch prints goes to stderr, not into the protocol
    side = _TorchSide()
    inp = sys.stdin.buffer
    while True:
        try:
            method, kwargs = pickle.load(inp)
        except EOFError:
            return
        try:
            reply = ("ok", getattr(side, method)(**kwargs))
        except Exception:  # report to the parent, which raises
            reply = ("error", traceback.format_exc())
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


class TorchWorker:
    """Client of the torch worker process (see :func:`_worker_main`)."""

    def __init__(self):
        env = dict(os.environ, **TORCH_ENV)
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()),
                                      "--torch-worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)

    def __call__(self, method, **kwargs):
        pickle.dump((method, kwargs), self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()
        status, value = pickle.load(self.proc.stdout)
        if status != "ok":
            raise RuntimeError(f"torch worker failed in {method}:\n{value}")
        return value

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ======================================================================================
# numharden side
# ======================================================================================
def layer_macs(graph, node) -> int:
    """Multiply-accumulates of one sample through a conv2d or linear node (else 0)."""
    a = node.attrs
    if node.op == "conv2d":
        co, ho, wo = graph.shapes[node.name]
        return co * ho * wo * (a["in_channels"] // a["groups"]) * a["kernel"][0] * a["kernel"][1]
    if node.op == "linear":
        return a["in_features"] * a["out_features"]
    return 0


def describe_layer(graph, node) -> str:
    a = node.attrs
    if node.op == "conv2d":
        _, h, w = graph.shapes[node.inputs[0]]
        kind = "dw" if a["groups"] == a["in_channels"] > 1 else ""
        return (f"{kind}conv {a['kernel'][0]}x{a['kernel'][1]}/s{a['stride'][0]} "
                f"{a['in_channels']}->{a['out_channels']} @{h}x{w}")
    if node.op == "linear":
        return f"linear {a['in_features']}->{a['out_features']}"
    return node.op


def wait_idle(threshold, max_wait=300.0) -> None:
    """Sleep until the 1-minute load average is below ``threshold`` (None: don't wait)."""
    if threshold is None:
        return
    t0 = time.monotonic()
    while os.getloadavg()[0] >= threshold and time.monotonic() - t0 < max_wait:
        _log(f"  waiting: load average {os.getloadavg()[0]:.2f} >= {threshold}")
        time.sleep(10)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench_config(name, cfg, worker, args):
    """Rows (one per thread count) for one model configuration."""
    import numpy as np

    from numharden.kernels import set_threads
    from numharden.models import build

    model = build(cfg["arch"], input_shape=cfg["shape"], num_classes=NUM_CLASSES,
                  weight_format=cfg["weight_format"], abits=cfg["abits"], seed=0)
    x = np.random.default_rng(0).standard_normal((args.batch,) + cfg["shape"]).astype(np.float32)
    info = worker("setup", name=name, arch=cfg["arch"], shape=cfg["shape"], abits=cfg["abits"],
                  params=model.float_params(), x=x, fuse=not args.no_fuse)
    variants = info["variants"]
    macs = sum(layer_macs(model.graph, n) for n in model.graph.nodes)
    rows = []
    for threads in args.threads:
        wait_idle(args.wait_idle)
        set_threads(threads)
        model.forward(x[:min(8, args.batch)])  # numba JIT (or cache load) + weight cache
        for v in variants:
            worker("run", name=name, variant=v, threads=threads, repeats=1)  # oneDNN warm-up
        nh, th = [], {v: [] for v in variants}
        repeats, r = args.min_repeats, 0
        while r < repeats:
            t0 = time.perf_counter()
            logits = model.forward(x)
            nh.append(time.perf_counter() - t0)
            ref = {}
            for v in variants:
                res = worker("run", name=name, variant=v, threads=threads, repeats=1)
                th[v] += res["times"]
                ref[v] = res["logits"]
            if r == 0:  # choose the repeat count from the first, steady-state round
                per_round = nh[0] + sum(t[0] for t in th.values())
                repeats = max(args.min_repeats,
                              min(args.max_repeats, math.ceil(args.budget / per_round)))
            r += 1
        row = {"model": name, "threads": threads, "batch": args.batch, "repeats": repeats,
               "gmacs_per_image": macs / 1e9,
               "numharden_s": statistics.median(nh), "numharden_min_s": min(nh)}
        for v in variants:
            row[f"torch_{v}_s"] = statistics.median(th[v])
            row[f"torch_{v}_min_s"] = min(th[v])
            row[f"maxdiff_{v}"] = float(np.abs(logits.astype(np.float64) - ref[v]).max())
        for k in [k for k in row if k.endswith("_s") and not k.endswith("min_s")]:
            row[k[:-2] + "_img_s"] = args.batch / row[k]
            row[k[:-2] + "_gflops"] = 2 * macs * args.batch / row[k] / 1e9
        row["load_avg"] = os.getloadavg()[0]
        _log(f"  {name} threads={threads}: numharden {row['numharden_img_s']:.0f} img/s, "
             f"torch {row['torch_eager_img_s']:.0f} img/s ({repeats} repeats)")
        rows.append(row)
    prof = None
    if args.profile:
        prof = profile_config(name, model, x, worker, args)
    return rows, prof


def profile_config(name, model, x, worker, args):
    """Per-layer median times, numharden (observe timestamps) next to torch (hooks)."""
    from numharden.kernels import set_threads

    threads, batch = args.profile_threads, min(args.profile_batch, args.batch)
    set_threads(threads)
    xb = x[:batch]
    model.forward(xb)
    times = defaultdict(list)
    totals = []
    for _ in range(args.profile_repeats):
        last = [time.perf_counter()]
        t0 = last[0]

        def observe(node, out):
            now = time.perf_counter()
            times[node.name].append(now - last[0])
            last[0] = now

        model.forward(xb, observe=observe)
        totals.append(time.perf_counter() - t0)
    ours = {k: statistics.median(v) for k, v in times.items()}
    theirs = worker("profile", name=name, threads=threads, batch=batch,
                    repeats=args.profile_repeats)
    g = model.graph
    layers = []
    folded = {n.inputs[0]: n.name for n in g.nodes if n.op == "batchnorm"
              and g.by_name.get(n.inputs[0]) is not None
              and g.by_name[n.inputs[0]].op == "conv2d"
              and g.consumers[n.inputs[0]] == [n.name]}
    for node in g.nodes:
        t_torch = theirs["layers"].get(node.name)
        if node.name in folded and t_torch is not None:  # compare with torch conv + BN
            t_torch += theirs["layers"].get(folded[node.name], 0.0)
        layers.append({"node": node.name, "op": node.op, "what": describe_layer(g, node),
                       "macs": layer_macs(g, node) * batch, "numharden_s": ours[node.name],
                       "torch_s": t_torch})
    by_op = defaultdict(float)
    for lay in layers:
        by_op[lay["op"]] += lay["numharden_s"]
    return {"model": name, "threads": threads, "batch": batch, "layers": layers,
            "by_op": dict(by_op), "numharden_total_s": statistics.median(totals),
            "torch_total_s": theirs["total"]}


# ======================================================================================
# report
# ======================================================================================
def _fmt(v, spec):
    return "—" if v is None else format(v, spec)


def markdown(rows, meta) -> str:
    lines = [f"Batch {meta['batch']}, float32, {meta['cpu']}; numharden {meta['numharden']} "
             f"(numba {meta['numba']}, threading layer {meta['threading_layer']}), "
             f"PyTorch {meta['torch']} eager, channels_last, inference_mode, "
             f"MALLOC_MMAP/TRIM_THRESHOLD_=1 GiB; numpy BLAS threads "
             f"{meta['blas_threads'] or 'default'} (numharden's cap). Medians over interleaved repeats; "
             f"load avg = 1-minute load average after the row (2 cores; above ~1 other "
             f"jobs share the cores and time-slice 2-thread runs).", "",
             "| model | threads | numharden img/s | numharden GFLOP/s | torch img/s | "
             "torch GFLOP/s | numharden/torch | torch conv+BN fused img/s | "
             "numharden/torch fused | max abs dlogit | repeats | load avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fused = r.get("torch_fused_img_s")
        lines.append(
            f"| {r['model']} | {r['threads']} | {r['numharden_img_s']:.0f} | "
            f"{r['numharden_gflops']:.1f} | {r['torch_eager_img_s']:.0f} | "
            f"{r['torch_eager_gflops']:.1f} | "
            f"{r['numharden_img_s'] / r['torch_eager_img_s']:.2f} | {_fmt(fused, '.0f')} | "
            f"{_fmt(None if fused is None else r['numharden_img_s'] / fused, '.2f')} | "
            f"{r['maxdiff_eager']:.1e} | {r['repeats']} | {r['load_avg']:.1f} |")
    return "\n".join(lines)


def markdown_profile(prof, top: int) -> str:
    tot = sum(lay["numharden_s"] for lay in prof["layers"])
    lines = [f"### {prof['model']}: per-layer time, batch {prof['batch']}, "
             f"{prof['threads']} thread(s)", "",
             f"numharden forward {prof['numharden_total_s'] * 1e3:.1f} ms, torch eager "
             f"{prof['torch_total_s'] * 1e3:.1f} ms. Time by op: " + ", ".join(
                 f"{op} {t / tot:.0%}" for op, t in
                 sorted(prof["by_op"].items(), key=lambda kv: -kv[1]) if t / tot >= 0.005), "",
             "| layer | what | numharden ms | share | numharden GFLOP/s | torch ms | "
             "torch GFLOP/s | slower by |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for lay in sorted(prof["layers"], key=lambda d: -d["numharden_s"])[:top]:
        t, tt, macs = lay["numharden_s"], lay["torch_s"], lay["macs"]
        lines.append(
            f"| {lay['node']} | {lay['what']} | {t * 1e3:.2f} | {t / tot:.0%} | "
            f"{_fmt(2 * macs / t / 1e9 if macs else None, '.1f')} | "
            f"{_fmt(None if tt is None else tt * 1e3, '.2f')} | "
            f"{_fmt(2 * macs / tt / 1e9 if macs and tt else None, '.1f')} | "
            f"{'—' if not tt else format(t / tt, '.1f') + 'x'} |")
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--min-repeats", type=int, default=3)
    p.add_argument("--max-repeats", type=int, default=15)
    p.add_argument("--budget", type=float, default=20.0,
                   help="seconds of timed calls per model and thread count (sets repeats)")
    p.add_argument("--no-fuse", action="store_true", help="skip the conv+BN fused torch variant")
    p.add_argument("--profile", action="store_true", help="per-layer numharden vs torch times")
    p.add_argument("--profile-batch", type=int, default=64)
    p.add_argument("--profile-threads", type=int, default=1,
                   help="threads for the profile (1: immune to time-slicing by other jobs)")
    p.add_argument("--profile-repeats", type=int, default=7)
    p.add_argument("--profile-top", type=int, default=12)
    p.add_argument("--wait-idle", type=float, metavar="LOAD",
                   help="before each measurement wait (up to 5 min) until the 1-minute load "
                        "average drops below LOAD -- on a shared machine a busy core "
                        "time-slices every parallel region")
    p.add_argument("--blas-threads", type=int, metavar="N",
                   help="numpy's BLAS threads for numharden's linear layers (sets "
                        "NUMHARDEN_BLAS_THREADS; numharden's default caps BLAS at 1)")
    p.add_argument("--quick", action="store_true", help="smoke run: batch 16, one repeat")
    p.add_argument("--json", type=Path, help="also write rows, profiles and metadata here")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.min_repeats, args.max_repeats, args.budget = 16, 1, 1, 0.0
        args.profile_batch, args.profile_repeats = 16, 1
    if args.batch < 1 or args.min_repeats < 1 or args.max_repeats < args.min_repeats:
        p.error("need --batch >= 1 and 1 <= --min-repeats <= --max-repeats")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.torch_worker:
        _worker_main()
        return 0
    if args.blas_threads is not None:  # numharden applies it when imported
        os.environ["NUMHARDEN_BLAS_THREADS"] = str(args.blas_threads)
    sys.path.insert(0, str(ROOT))
    import numba

    import numharden
    from numharden.kernels import get_blas_threads, get_threads

    avail = numba.config.NUMBA_NUM_THREADS
    if max(args.threads) > avail:
        _log(f"error: --threads {max(args.threads)} exceeds the {avail} threads numba has")
        return 2
    load_before = os.getloadavg()[0]
    worker = TorchWorker()
    rows, profiles, info = [], [], None
    try:
        for name in args.models:
            _log(f"benchmarking {name} ...")
            r, prof = bench_config(name, CONFIGS[name], worker, args)
            rows += r
            if prof is not None:
                profiles.append(prof)
        info = worker("version")
    finally:
        worker.close()
    meta = {"batch": args.batch, "cpu": _cpu_name(), "numharden": numharden.__version__,
            "numba": numba.__version__, "threading_layer": numba.threading_layer(),
            "torch": info["torch"], "python": platform.python_version(),
            "load_before": load_before, "load_after": os.getloadavg()[0],
            "max_threads": get_threads(), "torch_env": TORCH_ENV,
            "blas_threads": get_blas_threads()}
    print(markdown(rows, meta))
    for prof in profiles:
        print()
        print(markdown_profile(prof, args.profile_top))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "profiles": profiles},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
