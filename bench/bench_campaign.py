"""Campaign throughput of ``numharden sweep`` vs a PyTorch reference campaign (issue 3, item 8).

Usage (from the repository root; PyTorch is needed only here, never by numharden)::

    python bench/bench_campaign.py                  # markdown tables (10-15 min, 2 busy cores)
    python bench/bench_campaign.py --quick          # smoke run: 2,000 images, 4 trials, 1 repeat
    python bench/bench_campaign.py --json out.json  # also write everything as JSON
    python bench/bench_campaign.py --profile        # always add the per-step breakdown

Model: the built-in ``lenet5-fmnist-w4a4`` (int4/ch weights, 4-bit activations), or, if
its weights file is not installed yet, a freshly initialised zoo LeNet-5 of the same
formats (same shapes, so the same speed; accuracy and SDC counts are then those of an
untrained net). Data: the bundled Fashion-MNIST test split (10,000 images).

numharden side: the real engine trial of ``numharden sweep`` -- ``FaultSweepSpec(...)
.build()`` -> runner, called as ``runner(ber, trial, trial_seed(seed, ber, trial))`` --
at each BER (weight bit flips in the conv/linear weights, the sweep default):

* 1 core: numba kernels on 1 thread in this process;
* 2 cores: numba kernels on 2 threads in this process, and ``run_campaign(...,
  workers=2)`` (``numharden sweep --workers 2``: two spawned processes with 1 kernel
  thread each, records fsync'd to a temporary store). For the worker runs we report the
  steady rate (trials / time from the baseline record to the last record: process
  spawn, imports, JIT-cache load, model load and the clean pass excluded) and the
  end-to-end rate (trials / wall time of the whole ``run_campaign`` call).

The shortcut: a trial whose faults changed no stored bit is not run (its outputs are the
clean ones). At BER 1e-5 on LeNet-5 (61,470 int4 weights = 245,880 bits) that is
P(no fault) = exp(-2.46) = 8.5 % of trials; at 1e-4 and above practically none.
"sweep" rows are with the shortcut (what ``numharden sweep`` does; the torch reference
gets the same shortcut), "forced" rows run the network in every trial on both sides
(numharden: the runner's own injector + ``runner._predict()``, i.e. EngineRunner's trial
minus the shortcut). Forced rows are measured only where the trial set holds a
zero-fault trial (elsewhere they are the sweep rows).

OpenBLAS: numharden's linear layers are numpy ``@`` calls, and numpy's OpenBLAS runs
as many threads as there are cores whatever ``set_threads``/``NUMHARDEN_THREADS`` say
(so ``--workers 2`` runs 2 x 2 BLAS threads on 2 cores, and idle OpenBLAS threads spin
next to numba's). Each numharden number is given twice (``--blas``): with OpenBLAS at its
default (what a user gets today), "matched" (OpenBLAS limited to the numba thread count
through its ctypes setter) and "single" (OpenBLAS on 1 thread); worker processes get
``OPENBLAS_NUM_THREADS=1`` except in the default variant. Configurations that coincide
(matched = default at 2 threads, single = matched at 1 thread and for workers) are
measured once and reported under each name.

PyTorch side, in a separate process (see ``bench/_torch_campaign.py``): the independent
LeNet-5 twin of ``tests/golden/torch_twins.py`` loaded with the decoded stored weights,
activation fake quantisation ``round(clamp(x, 0, clip) / s) * s``, channels_last,
``torch.inference_mode``, ``torch.set_num_threads(1 | 2)``, glibc malloc thresholds at
1 GiB set before torch is imported. numharden samples each trial's fault list once
before timing and writes it with ``FaultList.save`` (docs/FAULTS.md layout); the torch
campaign reads those lists with h5py and per trial flips the bits of its own copy of the
int codes, sign-extends, decodes the changed values and writes them into the
``nn.Parameter`` in place, evaluates the images in batches of the same size as
numharden, counts correct/SDC, and restores. Fault *sampling* is therefore in numharden's
trial time but not in torch's (it costs about 0.1 ms, see bench/bench_faults.py).

Correctness: before timing, the torch side checks that its faulted raw codes equal the
``new`` codes numharden recorded and that restore is bit-exact; after timing, every
trial's correct and SDC counts of the two campaigns are compared (a pre-activation at a
4-bit rounding boundary may round differently in float32, so an image or two may
differ; the maximum is printed) and all numharden runs (1/2 threads, forced, 2 workers,
every repeat) must agree exactly with each other.

Timing: JIT compile, the clean pass and a warm-up trial per BER and thread count are
excluded. numharden and torch blocks alternate (same trials, same order) repeat by
repeat so load from other processes hits both alike; trials/s of a block = trials / sum
of per-trial times; reported are medians over the repeats. ``numharden/PyTorch`` > 1
means numharden is faster. When a ratio is below the 1.5x target (or with
``--profile``) a per-step breakdown of one trial follows, numharden next to torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

import numpy as np  # noqa: E402

from numharden.campaign import CampaignConfig, CampaignStore, run_campaign, trial_seed  # noqa: E402
from numharden.campaign.engine import EngineRunner, FaultSweepSpec  # noqa: E402
from numharden.faults import FaultInjector  # noqa: E402

BUILTIN = "lenet5-fmnist-w4a4"
NORMALIZATION = {"mean": [0.2860], "std": [0.3530]}  # as weights/train_builtin.py
TARGET_RATIO = 1.5
COUNTS = ("correct", "sdc", "nonfinite", "n_faults")
BLAS_HEADS = {"default": "OpenBLAS default", "matched": "OpenBLAS threads = numba threads",
              "single": "OpenBLAS 1 thread"}


# ======================================================================================
# numharden trial variants
# ======================================================================================
def run_forced(runner: EngineRunner, ber: float, trial: int, seed: int) -> dict:
    """EngineRunner's weight-fault trial without the no-change shortcut."""
    key = (None, ber)
    if key not in runner._injectors:
        runner._injectors[key] = FaultInjector(
            runner.model, runner.spec.fault_model(ber, runner.targets, None))
    injector = runner._injectors[key]
    applied = injector.inject(np.random.default_rng(seed))
    try:
        preds, nonfinite = runner._predict()
    finally:
        injector.undo(applied)
    return runner._result(preds, nonfinite, len(applied), int(applied.masked.sum()))


class ForcedRunner(EngineRunner):
    """Runner of :class:`ForcedSpec`: every weight trial runs the network."""

    def __call__(self, ber, trial, seed, group=None):
        if group is not None or self.spec.target != "weights" or ber == 0.0:
            return super().__call__(ber, trial, seed, group=group)
        return run_forced(self, ber, trial, seed)


class ForcedSpec(FaultSweepSpec):
    """The sweep spec with the shortcut disabled (for ``run_campaign(workers=2)``)."""

    def build(self):
        return ForcedRunner(self)


# ======================================================================================
# OpenBLAS threads (numpy's matmul in the linear layers)
# ======================================================================================
def _openblas():
    """(set, get) ctypes functions of the OpenBLAS numpy loaded, or None (as threadpoolctl)."""
    import ctypes

    try:
        libs = sorted({ln.split()[-1] for ln in open("/proc/self/maps") if "openblas" in ln})
    except OSError:
        return None
    for path in libs:
        lib = ctypes.CDLL(path)
        for suffix in ("64_", ""):
            for prefix in ("scipy_openblas", "openblas"):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
                    return setter, getter
    return None


class BlasThreads:
    """Switch between OpenBLAS's default thread count and 'as many as numba uses'.

    numharden's linear layers call numpy's ``@`` (OpenBLAS, which starts as many threads
    as cores) whatever ``set_threads`` says; ``--workers 2`` processes inherit that. The
    'matched' variant limits OpenBLAS to the numba thread count (in this process through
    OpenBLAS's own setter, in spawned workers through ``OPENBLAS_NUM_THREADS=1``).
    """

    def __init__(self):
        self.fns = _openblas()
        self.default = self.fns[1]() if self.fns else None
        self.env = os.environ.get("OPENBLAS_NUM_THREADS")

    def effective(self, variant: str, threads: int):
        """OpenBLAS threads of this process under ``variant`` (None: not controllable)."""
        if self.fns is None:
            return None
        return {"default": self.default, "matched": threads, "single": 1}[variant]

    def worker_env(self, variant: str):
        """OPENBLAS_NUM_THREADS handed to --workers processes under ``variant``."""
        return self.env if variant == "default" else "1"

    def use(self, variant: str, threads: int) -> None:
        if self.fns is None:
            return
        self.fns[0](self.effective(variant, threads))
        env = self.worker_env(variant)
        if env is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = env


# ======================================================================================
# setup
# ======================================================================================
def resolve_model(name: str, tmp: Path):
    """(model spec for FaultSweepSpec, note or None)."""
    from numharden.errors import ConfigError
    from numharden.io import load_model, save_model

    try:
        load_model(name)
        return name, None
    except ConfigError:
        if name != BUILTIN:
            raise
    from numharden.data import load_dataset
    from numharden.models import build

    classes = list(load_dataset("fashion-mnist", split="test").class_names)
    model = build("lenet5", weight_format="int4/ch", abits=4, seed=0,
                  meta={"normalization": NORMALIZATION, "class_names": classes})
    path = tmp / "lenet5-w4a4-untrained.h5"
    save_model(model, path)
    return str(path), (f"weights/{BUILTIN}.h5 is not installed: measured on a freshly "
                       f"initialised zoo LeNet-5 with int4/ch weights and 4-bit activations "
                       f"(same shapes and formats, so the same speed; accuracy and SDC "
                       f"counts are those of an untrained net)")


def export_faults(runner: EngineRunner, bers, seeds, path: Path) -> dict:
    """Sample + apply + undo every trial's faults on a copy of the model (exactly what
    the runner will draw from the same seeds) and save the applied lists as HDF5."""
    import h5py

    model = runner.model.copy()
    info = {}
    with h5py.File(path, "w") as f:
        for ber in bers:
            g = f.create_group(repr(ber))
            g.attrs["ber"] = ber
            inj = FaultInjector(model, runner.spec.fault_model(ber, runner.targets, None))
            n_faults, n_changed, changed = [], [], []
            for t, seed in enumerate(seeds[ber]):
                applied = inj.inject(np.random.default_rng(seed))
                inj.undo(applied)
                applied.save(g.create_group(str(t)))
                n_faults.append(len(applied))
                n_changed.append(len(applied) - applied.n_masked)
                hit = applied.tensor[~applied.masked & (applied.old != applied.new)]
                changed.append(sorted({applied.names[i] for i in hit}))
            info[ber] = {"n_faults": n_faults, "n_changed": n_changed,
                         "changed_tensors": changed, "n_bits": inj.n_bits}
    return info


def torch_targets(runner: EngineRunner) -> dict:
    """name -> (int codes, scale broadcast to the codes' shape, format spec)."""
    out = {}
    for name in runner.targets:
        st = runner.model.params[name]
        s = np.asarray(st.scale, np.float32)
        if st.axis is not None:
            shape = [1] * st.codes.ndim
            shape[st.axis] = -1
            s = s.reshape(shape)
        out[name] = (st.codes.copy(), np.ascontiguousarray(np.broadcast_to(s, st.shape)),
                     st.fmt.spec)
    return out


# ======================================================================================
# measurements
# ======================================================================================
def nh_block(fn, ber, seeds):
    results, times = [], []
    for t, seed in enumerate(seeds):
        t0 = time.perf_counter()
        res = fn(ber, t, seed)
        times.append(time.perf_counter() - t0)
        results.append(res)
    return results, times


def workers_campaign(spec, ber, trials, seed, out: Path) -> dict:
    """``run_campaign(workers=2)`` into a fresh store; steady and end-to-end rates."""
    stamps = []
    t0 = time.perf_counter()
    run_campaign(spec, CampaignConfig(bers=(ber,), trials=trials, seed=seed), out, workers=2,
                 progress=lambda p: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    recs = CampaignStore.open(out).load().records
    results = [{k: recs[(None, ber, t)][k] for k in COUNTS} for t in range(trials)]
    # the baseline (BER 0) is the first task and needs no forward pass: its record marks
    # the moment the first worker is ready
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return {"results": results, "wall_s": wall, "startup_s": stamps[0] - t0,
            "steady_tps": steady, "e2e_tps": trials / wall,
            "worker_trial_s": [recs[(None, ber, t)]["duration"] for t in range(trials)]}


def wait_idle(threshold, max_wait=300.0) -> None:
    """Sleep until the 1-minute load average is below ``threshold`` (None: don't wait)."""
    if threshold is None:
        return
    t0 = time.monotonic()
    while os.getloadavg()[0] >= threshold and time.monotonic() - t0 < max_wait:
        _log(f"  waiting: load average {os.getloadavg()[0]:.2f} >= {threshold}")
        time.sleep(10)


def measure(args, runner, spec, forced_spec, worker, bers, seeds, zero, tmp, blas):
    """Interleaved numharden / torch blocks.

    Returns ``samples[(impl, ber, cores, mode, blas)]`` -> trials/s per repeat,
    ``results[...]`` -> per repeat the per-trial counts, and worker-run details.
    impl: 'numharden' (this process), 'workers2' (run_campaign, steady rate),
    'workers2-e2e' (same runs, end to end), 'torch' (blas '-').
    """
    from numharden.kernels import set_threads

    samples, results, extra = defaultdict(list), {}, defaultdict(list)
    n = args.trials

    def keep(key, res, tps):
        samples[key].append(tps)
        results.setdefault(key, []).append([{k: r[k] for k in COUNTS} for r in res])

    for threads in args.threads:
        wait_idle(args.wait_idle)
        set_threads(threads)
        for ber in bers:  # warm-up at this thread count (injector creation, oneDNN primitives)
            for variant in args.blas:
                blas.use(variant, threads)
                runner(ber, 0, seeds[ber][0])
            worker("run", keys=[(ber, 0)], threads=threads, shortcut=False)
        for r in range(args.repeats):
            for ber in bers:
                keys = [(ber, t) for t in range(n)]
                for mode in (("sweep", "forced") if zero[ber] else ("sweep",)):
                    msg = [f"  threads={threads} repeat {r + 1}/{args.repeats} BER {ber:g} {mode}:"]
                    fn = runner if mode == "sweep" else (
                        lambda b, t, s: run_forced(runner, b, t, s))
                    done = {}  # OpenBLAS thread count -> (results, trials/s)
                    for variant in args.blas:
                        eff = blas.effective(variant, threads)
                        if eff not in done:  # 'matched' at 2 threads is the default: run once
                            blas.use(variant, threads)
                            res, times = nh_block(fn, ber, seeds[ber])
                            done[eff] = (res, n / sum(times))
                            msg.append(f"numharden[{variant} BLAS] {n / sum(times):.2f}")
                        keep(("numharden", ber, threads, mode, variant), *done[eff])
                    th = worker("run", keys=keys, threads=threads, shortcut=mode == "sweep")
                    keep(("torch", ber, threads, mode, "-"), th["results"], n / sum(th["times"]))
                    msg.append(f"torch {n / sum(th['times']):.2f}")
                    if threads == 2 and args.workers:
                        wdone = {}  # worker OPENBLAS_NUM_THREADS -> run
                        for variant in args.blas:
                            env = blas.worker_env(variant)
                            if env not in wdone:  # 'single' workers are 'matched' workers
                                blas.use(variant, 1)
                                w = wdone[env] = workers_campaign(
                                    spec if mode == "sweep" else forced_spec, ber, n, args.seed,
                                    tmp / f"w2-{ber!r}-{mode}-{variant}-{r}")
                                extra[("workers2", ber, mode, variant)].append(
                                    {k: w[k] for k in ("wall_s", "startup_s", "worker_trial_s")})
                                msg.append(f"--workers 2 [{variant} BLAS] {w['steady_tps']:.2f} "
                                           f"steady / {w['e2e_tps']:.2f} e2e (start-up "
                                           f"{w['startup_s']:.1f} s)")
                            w = wdone[env]
                            keep(("workers2", ber, 2, mode, variant), w["results"],
                                 w["steady_tps"])
                            samples[("workers2-e2e", ber, 2, mode, variant)].append(w["e2e_tps"])
                    blas.use("default", threads)
                    _log(" ".join(msg) + f" trials/s [load {os.getloadavg()[0]:.1f}]")
    return samples, results, extra


# ======================================================================================
# profile: where a trial's time goes
# ======================================================================================
def segments_of(graph, torch_modules) -> dict:
    """numharden node -> torch leaf module whose forward hook ends its segment."""
    out, pending = {}, []
    for node in graph.nodes:
        pending.append(node.name)
        if node.name in torch_modules:
            for p in pending:
                out[p] = node.name
            pending = []
    for p in pending:
        out[p] = None
    return out


def _profile_numharden(runner, ber, trials, seeds) -> dict:
    """Median seconds per step of a forced trial (current numba/BLAS threads)."""
    model, x, bs = runner.model, runner.x, runner.bs
    inj = FaultInjector(model, runner.spec.fault_model(ber, runner.targets, None))
    layers = [n for n in model.graph.nodes if n.params]
    first = model.graph.nodes[0].name
    rows = defaultdict(list)
    for t in trials:
        node_t = defaultdict(float)
        rng = np.random.default_rng(seeds[ber][t])
        t0 = time.perf_counter()
        faults = inj.sample(rng)
        t1 = time.perf_counter()
        applied = inj.apply(faults)
        t2 = time.perf_counter()
        for node in layers:  # what the first forward does lazily: re-derive touched layers
            model._derive(node, np.float32, True)
        t3 = time.perf_counter()
        preds = np.empty(len(runner.labels), np.int64)
        wrap = head = 0.0
        mark = [0.0]

        def observe(node, out):
            now = time.perf_counter()
            node_t[node.name] += now - mark[0]
            mark[0] = now

        for s in range(0, len(preds), bs):
            xb = x[s:s + bs]
            w0 = time.perf_counter()  # Model.forward's own work before the first node
            model._check_input(xb)
            np.ascontiguousarray(xb.transpose(0, 2, 3, 1), dtype=np.float32)
            wrap += time.perf_counter() - w0
            mark[0] = time.perf_counter()
            logits = model.forward(xb, observe=observe)
            h0 = time.perf_counter()
            bad = ~np.isfinite(logits).all(axis=1)
            p = logits.argmax(axis=1)
            p[bad] = -1
            preds[s:s + bs] = p
            head += time.perf_counter() - h0
        t4 = time.perf_counter()
        runner._result(preds, 0, len(applied), 0)
        t5 = time.perf_counter()
        inj.undo(applied)
        t6 = time.perf_counter()
        # the first node's segment also holds the input check + NHWC copy measured above
        node_t[first] = max(0.0, node_t[first] - wrap)
        rows["fault sampling"].append(t1 - t0)
        rows["apply"].append(t2 - t1)
        rows["re-derive"].append(t3 - t2)
        rows["input check + NCHW->NHWC copy"].append(wrap)
        for k, v in node_t.items():
            rows[f"node {k}"].append(v)
        rows["argmax + isfinite"].append(head)
        rows["count correct / SDC"].append(t5 - t4)
        rows["undo"].append(t6 - t5)
        rows["trial total"].append(t6 - t0)
    return {k: statistics.median(v) for k, v in rows.items()}


def profile(args, runner, worker, ber, trials, seeds, blas):
    """Step breakdown of a forced trial at 1 thread: numharden with OpenBLAS at its
    default and at 1 thread, torch."""
    from numharden.kernels import set_threads

    set_threads(1)
    out = {"ber": ber, "trials": len(trials), "threads": 1}
    for variant in ("default", "matched"):
        blas.use(variant, 1)
        _profile_numharden(runner, ber, trials[:1], seeds)  # warm-up
        out[f"numharden_{variant}"] = _profile_numharden(runner, ber, trials, seeds)
    blas.use("default", 1)
    out["torch"] = worker("profile", keys=[(ber, t) for t in trials], threads=1)
    return out


def projection(prof, graph, bers, fault_info) -> list:
    """Projected trial time if a trial re-ran the network only from the first layer whose
    weights changed (clean activations cached at each faultable layer's input), from the
    profiled step times (OpenBLAS matched) and the sampled fault lists."""
    ours = prof["numharden_matched"]
    order = [n.name for n in graph.nodes]
    node_of = {p: n.name for n in graph.nodes for p in n.params.values()}
    fixed = sum(ours[k] for k in ("fault sampling", "apply", "re-derive",
                                  "input check + NCHW->NHWC copy", "argmax + isfinite",
                                  "count correct / SDC", "undo"))
    node_s = [ours.get(f"node {n}", 0.0) for n in order]
    full = fixed + sum(node_s)
    skip = ours["fault sampling"] + ours["apply"] + ours["undo"]
    out = []
    for ber in bers:
        info = fault_info[ber]
        t_now = t_new = 0.0
        start = defaultdict(int)
        for changed in info["changed_tensors"]:
            if not changed:
                t_now += skip
                t_new += skip
                start["none"] += 1
                continue
            i = min(order.index(node_of[c]) for c in changed)
            start[order[i]] += 1
            t_now += full
            t_new += fixed + sum(node_s[i:])
        out.append({"ber": ber, "first_changed": dict(start), "sweep_s": t_now / len(
            info["changed_tensors"]), "resume_s": t_new / len(info["changed_tensors"]),
            "speedup": t_now / t_new})
    return out


def markdown_profile(prof, graph, proj) -> str:
    a_def, a_mat, theirs = prof["numharden_default"], prof["numharden_matched"], prof["torch"]
    mods = {k[len("forward: "):] for k in theirs if k.startswith("forward: ")}
    seg = segments_of(graph, mods)
    groups = defaultdict(list)
    for node in graph.nodes:
        groups[seg[node.name]].append(node.name)

    def ms(v):
        return "—" if v is None else f"{v * 1e3:.2f}"

    def line(label, key=None, tkey=None, nodes=None):
        if nodes is not None:
            a, b = (sum(d.get(f"node {n}", 0.0) for n in nodes) for d in (a_def, a_mat))
        else:
            a, b = a_def[key], a_mat[key]
        c = theirs.get(tkey) if tkey else None
        return (f"| {label} | {ms(a)} | {ms(b)} | {b / a_mat['trial total']:.0%} | {ms(c)} | "
                f"{'—' if not (b and c) else f'{b / c:.2f}x'} |")

    lines = [f"### Where a trial's time goes (BER {prof['ber']:g}, forced, 1 thread, "
             f"median of {prof['trials']} trials)", "",
             "numharden with OpenBLAS at its default thread count (what `numharden sweep` "
             "gets today) and limited to 1 thread; torch forward segments run from one "
             "module's forward hook to the next (functional relu/max-pool fall into the "
             "following module's segment).", "",
             "| step | numharden ms (OpenBLAS default) | numharden ms (OpenBLAS 1 thread) | "
             "share | PyTorch ms | numharden (1 BLAS thread) / PyTorch time |",
             "|---|---:|---:|---:|---:|---:|",
             line("fault sampling", "fault sampling"),
             line("apply faults (numharden: Numba kernel; torch: flip codes, decode, "
                  "index_put_)", "apply", "inject (flip codes, decode, index_put_)"),
             line("re-derive touched weights (decode, fold, HWIO)", "re-derive"),
             line("input check + NCHW->NHWC copy", "input check + NCHW->NHWC copy")]
    for mod, nodes in groups.items():
        what = " + ".join(nodes)
        lines.append(line(f"forward: {what}", tkey=f"forward: {mod}" if mod else None,
                          nodes=nodes))
    lines += [line("argmax + isfinite", "argmax + isfinite", "argmax + isfinite"),
              line("count correct / SDC", "count correct / SDC", "count correct / SDC"),
              line("undo / restore", "undo", "restore codes + weights"),
              line("**trial total**", "trial total", "trial total")]
    if proj:
        lines += ["", "Projection (not a measurement): trial time if numharden re-ran only from "
                  "the first layer whose weights changed, with clean activations cached at "
                  "each faultable layer's input (bit-exact; no-change trials skipped as "
                  "today), from the step times above (OpenBLAS 1 thread) and the sampled "
                  "fault lists:", "",
                  "| BER | trials by first changed layer | ms/trial now | ms/trial resumed | "
                  "speed-up | projected numharden/PyTorch (1 thread) |",
                  "|---|---|---:|---:|---:|---:|"]
        for p in proj:
            first = ", ".join(f"{k} {v}" for k, v in p["first_changed"].items())
            lines.append(f"| {p['ber']:g} | {first} | {p['sweep_s'] * 1e3:.1f} | "
                         f"{p['resume_s'] * 1e3:.1f} | {p['speedup']:.2f}x | "
                         f"{theirs['trial total'] / p['resume_s']:.2f} |")
    return "\n".join(lines)


# ======================================================================================
# report
# ======================================================================================
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


def build_rows(args, samples, bers, zero):
    med = {k: statistics.median(v) for k, v in samples.items()}
    rows = []
    for ber in bers:
        for cores in args.threads:
            for mode in ("sweep", "forced"):
                m = mode if (mode == "sweep" or zero[ber]) else "sweep"
                th = med.get(("torch", ber, cores, m, "-"))
                if th is None:
                    continue
                hows = [("numharden", "numba 1 thread" if cores == 1
                         else "numba 2 threads, 1 process")]
                if cores == 2 and args.workers:
                    hows += [("workers2", "--workers 2, steady"),
                             ("workers2-e2e", "--workers 2, incl. start-up")]
                for impl, how in hows:
                    row = {"ber": ber, "cores": cores, "mode": mode, "same_as_sweep": m != mode,
                           "numharden": how, "torch_tps": th}
                    for variant in args.blas:
                        tps = med.get((impl, ber, cores, m, variant))
                        row[f"numharden_tps_{variant}"] = tps
                        row[f"ratio_{variant}"] = None if tps is None else tps / th
                    rows.append(row)
    return rows


def agreement(bers, results, fault_info):
    """Per BER: torch vs numharden counts, numharden runs among themselves."""
    out = []
    for ber in bers:
        ref = next(reps[0] for k, reps in sorted(results.items(), key=lambda kv: kv[0][2])
                   if k[:2] == ("numharden", ber) and k[3] == "sweep")
        nh_same = all(res == ref for k, reps in results.items()
                      if k[1] == ber and k[0] != "torch" for res in reps)
        dc = ds = 0
        nf_same = True
        for k, reps in results.items():
            if k[0] != "torch" or k[1] != ber:
                continue
            for a, b in zip(ref * len(reps), [x for res in reps for x in res]):
                dc = max(dc, abs(a["correct"] - b["correct"]))
                ds = max(ds, abs(a["sdc"] - b["sdc"]))
                nf_same &= a["n_faults"] == b["n_faults"]
        info = fault_info[ber]
        out.append({"ber": ber, "trials": len(ref), "mean_faults": float(np.mean(info["n_faults"])),
                    "zero_change_trials": int(sum(c == 0 for c in info["n_changed"])),
                    "mean_acc": float(np.mean([r["correct"] for r in ref])),
                    "mean_sdc": float(np.mean([r["sdc"] for r in ref])),
                    "max_dcorrect": dc, "max_dsdc": ds, "n_faults_equal": nf_same,
                    "numharden_runs_identical": nh_same})
    return out


def _num(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def markdown(rows, agree, meta) -> str:
    lines = [f"LeNet-5 w4a4 fault campaign, {meta['images']} Fashion-MNIST test images per trial, "
             f"weight bit flips in the conv/linear weights ({meta['n_bits']:,} bits), "
             f"{meta['trials']} trials per BER, medians over {meta['repeats']} interleaved "
             f"repeats; {meta['cpu']}, 2 cores shared with other jobs (load average "
             f"{meta['load_before']:.1f} before, {meta['load_after']:.1f} after). numharden "
             f"{meta['numharden']} (numba {meta['numba']}, {meta['threading_layer']}), "
             f"PyTorch {meta['torch']} eager (channels_last, inference_mode, malloc "
             f"thresholds 1 GiB), batch {meta['batch_size']} on both sides.", ""]
    if meta.get("note"):
        lines += [f"Note: {meta['note']}.", ""]
    heads = BLAS_HEADS
    lines += ["| BER | cores | trials | numharden | " + " | ".join(
        f"numharden trials/s ({heads[v]})" for v in meta["blas"]) + " | PyTorch trials/s | "
        + " | ".join(f"numharden/PyTorch ({heads[v]})" for v in meta["blas"]) + " |",
        "|---|---:|---|---|" + "---:|" * (2 * len(meta["blas"]) + 1)]
    for r in rows:
        mode = ("sweep (skip no-change trials)" if r["mode"] == "sweep"
                else "forced (every trial runs)")
        if r["same_as_sweep"]:
            mode += " = sweep (no zero-fault trial)"
        tps = " | ".join(_num(r[f"numharden_tps_{v}"]) for v in meta["blas"])
        ratio = " | ".join(_num(r[f"ratio_{v}"]) for v in meta["blas"])
        lines.append(f"| {r['ber']:g} | {r['cores']} | {mode} | {r['numharden']} | {tps} | "
                     f"{r['torch_tps']:.2f} | {ratio} |")
    lines += ["", "Agreement, per trial (numharden vs the torch campaign replaying the same "
              "fault lists):", "",
              "| BER | trials | mean faults | zero-fault trials | mean accuracy | mean SDC "
              "images | max abs d(correct) | max abs d(SDC) | fault counts equal | numharden "
              "runs identical |", "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for a in agree:
        lines.append(f"| {a['ber']:g} | {a['trials']} | {a['mean_faults']:.1f} | "
                     f"{a['zero_change_trials']} | {a['mean_acc'] / meta['images']:.4f} | "
                     f"{a['mean_sdc']:.1f} | {a['max_dcorrect']} | {a['max_dsdc']} | "
                     f"{'yes' if a['n_faults_equal'] else 'NO'} | "
                     f"{'yes' if a['numharden_runs_identical'] else 'NO'} |")
    lines += ["", f"Clean predictions differing between numharden and torch: "
              f"{meta['clean_disagree']} of {meta['images']}; torch faulted codes vs "
              f"numharden's recorded codes, restore: {meta['verify_mismatches']} mismatches."]
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=BUILTIN, help="model file or built-in name")
    p.add_argument("--bers", type=float, nargs="+", default=[1e-5, 1e-4, 1e-3])
    p.add_argument("--trials", type=int, default=8, help="trials per BER (per repeat)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    p.add_argument("--images", type=int, default=None, help="first N test images (default all)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="inference batch of both sides (default: numharden's config, 1000)")
    p.add_argument("--seed", type=int, default=0, help="campaign seed")
    p.add_argument("--blas", nargs="+", choices=list(BLAS_HEADS),
                   default=list(BLAS_HEADS),
                   help="numharden's OpenBLAS threads: its default (as many as cores), "
                        "matched to the numba threads, and/or 1 (--workers processes get 1 "
                        "except under 'default')")
    p.add_argument("--no-workers", dest="workers", action="store_false",
                   help="skip the run_campaign(workers=2) measurement")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--profile", action="store_true", help="always add the step breakdown")
    g.add_argument("--no-profile", action="store_true", help="never add it")
    p.add_argument("--profile-trials", type=int, default=8)
    p.add_argument("--wait-idle", type=float, metavar="LOAD",
                   help="before each thread count wait (up to 5 min) until the 1-minute "
                        "load average drops below LOAD")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2,000 images, 4 trials, 1 repeat, 2 profiled trials")
    p.add_argument("--json", type=Path, help="also write rows, agreement, profile, metadata")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.trials, args.repeats, args.profile_trials = 2000, 4, 1, 2
    if args.trials < 1 or args.repeats < 1:
        p.error("need --trials >= 1 and --repeats >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import numba

    import numharden
    from _torch_campaign import TorchWorker

    load_before = os.getloadavg()[0]
    bers = [float(b) for b in args.bers]
    with tempfile.TemporaryDirectory(prefix="bench_campaign_") as tmpdir:
        tmp = Path(tmpdir)
        model_spec, note = resolve_model(args.model, tmp)
        kw = dict(model=model_spec, images=args.images, batch_size=args.batch_size)
        spec, forced_spec = FaultSweepSpec(**kw), ForcedSpec(**kw)
        from numharden.kernels import set_threads
        set_threads(1)
        _log("building the runner (model, data, JIT, clean pass) ...")
        runner = spec.build()
        seeds = {b: [trial_seed(args.seed, b, t) for t in range(args.trials)] for b in bers}
        fault_info = export_faults(runner, bers, seeds, tmp / "faults.h5")
        zero = {b: any(c == 0 for c in fault_info[b]["n_changed"]) for b in bers}
        model = runner.model
        blas = BlasThreads()
        if blas.fns is None:
            _log("OpenBLAS not found: --blas matched measures the same as default")
        _log("starting the torch worker ...")
        worker = TorchWorker()
        try:
            info = worker("setup", arch=model.meta.get("arch", "lenet5"),
                          shape=model.graph.input_shape, num_classes=model.num_classes,
                          abits=model.meta.get("abits", 4), params=model.float_params(),
                          targets=torch_targets(runner), x=runner.x, labels=runner.labels,
                          batch_size=runner.bs, faults_path=str(tmp / "faults.h5"))
            keys = [(b, t) for b in bers for t in range(args.trials)]
            mismatches = worker("verify", keys=keys)
            samples, results, extra = measure(args, runner, spec, forced_spec, worker, bers,
                                              seeds, zero, tmp, blas)
            rows = build_rows(args, samples, bers, zero)
            ratios = [r[f"ratio_{v}"] for r in rows for v in args.blas
                      if r[f"ratio_{v}"] is not None]
            prof = proj = None
            if args.profile or (not args.no_profile and min(ratios) < TARGET_RATIO):
                pber = bers[len(bers) // 2]
                _log(f"profiling BER {pber:g} ...")
                prof = profile(args, runner, worker, pber,
                               list(range(min(args.profile_trials, args.trials))), seeds, blas)
                proj = projection(prof, model.graph, bers, fault_info)
        finally:
            worker.close()
    agree = agreement(bers, results, fault_info)
    meta = {"cpu": _cpu_name(), "numharden": numharden.__version__, "numba": numba.__version__,
            "threading_layer": numba.threading_layer(), "torch": info["torch"],
            "python": platform.python_version(), "model": args.model, "note": note,
            "images": len(runner.labels), "batch_size": runner.bs, "trials": args.trials,
            "repeats": args.repeats, "seed": args.seed, "blas": args.blas,
            "openblas_default_threads": blas.default,
            "n_bits": fault_info[bers[0]]["n_bits"],
            "clean_disagree": int((info["clean_preds"] != runner.clean).sum()),
            "verify_mismatches": int(mismatches), "load_before": load_before,
            "load_after": os.getloadavg()[0]}
    print(markdown(rows, agree, meta))
    if prof is not None:
        print()
        print(markdown_profile(prof, model.graph, proj))
    if args.json:
        args.json.write_text(json.dumps(
            {"meta": meta, "rows": rows, "agreement": agree, "profile": prof,
             "projection": proj,
             "samples": [{"impl": k[0], "ber": k[1], "cores": k[2], "mode": k[3],
                          "blas": k[4], "trials_per_s": v} for k, v in samples.items()],
             "workers": [{"ber": k[1], "mode": k[2], "blas": k[3], "runs": v}
                         for k, v in extra.items()],
             "faults": {repr(b): v for b, v in fault_info.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
