"""Campaign throughput of ``numharden sweep`` vs a PyTorch reference campaign (issue 3, item 8).

Usage (from the repository root; PyTorch is needed only here, never by numharden)::

    python bench/bench_campaign.py                  # markdown tables (2 busy cores)
    python bench/bench_campaign.py --quick          # smoke run: 2,000 images, 4 trials, 1 repeat
    python bench/bench_campaign.py --json out.json  # also write everything as JSON
    python bench/bench_campaign.py --profile        # always add the per-step breakdown

Model: the built-in ``lenet5-fmnist-w4a4`` (int4/ch weights, 4-bit activations), or, if
its weights file is not installed yet, a freshly initialised zoo LeNet-5 of the same
formats (same shapes, so the same speed; accuracy and SDC counts are then those of an
untrained net). Data: the bundled Fashion-MNIST test split (10,000 images).

numharden side: the real engine trial of ``numharden sweep`` -- ``FaultSweepSpec(...)
.build()`` -> runner, called as ``runner(ber, trial, trial_seed(seed, ber, trial))`` --
at each BER (weight bit flips in the conv/linear weights, the sweep default), in two
modes:

* "sweep" (what ``numharden sweep`` does): a trial whose faults changed no stored bit is
  not run (its outputs are the clean ones); any other trial recomputes only the nodes
  downstream of the tensors its faults changed, from the fault-free activations the
  runner recorded once (``Model.forward(reuse=...)``, budget
  ``NUMHARDEN_CAMPAIGN_CACHE_MB``; 0 disables the recording and every trial becomes a
  full pass). At BER 1e-5 on LeNet-5 (61,470 int4 weights = 245,880 bits) P(no fault)
  = exp(-2.46) = 8.5 % of trials; at 1e-4 and above practically none.
* "full pass": every trial runs the whole network (the runner's own injector +
  ``runner._predict()``, i.e. EngineRunner's trial without the shortcut and without
  the recorded activations).

Each mode runs on 1 core (numba kernels on 1 thread in this process) and on 2 cores:
numba kernels on 2 threads in this process, and ``run_campaign(..., workers=2)``
(``numharden sweep --workers 2``: two spawned processes with 1 kernel thread each,
records fsync'd to a temporary store). For the worker runs we report the steady rate
(trials / time from the baseline record to the last record: process spawn, imports,
JIT-cache load, model load, the clean pass and the recording of fault-free activations
excluded) and the end-to-end rate (trials / wall time of the whole ``run_campaign``
call).

BLAS: numharden's linear layers are numpy ``@`` calls; numharden itself caps numpy's
BLAS at ``NUMHARDEN_BLAS_THREADS`` threads (default 1, through threadpoolctl, when
``numharden.kernels`` is imported -- so also in every ``--workers`` process). The
header line reports the count in effect here (``numharden.kernels.get_blas_threads()``).

PyTorch side, in a separate process (see ``bench/_torch_campaign.py``): the independent
LeNet-5 twin of ``tests/golden/torch_twins.py`` loaded with the decoded stored weights,
activation fake quantisation ``round(clamp(x, 0, clip) / s) * s``, channels_last,
``torch.inference_mode``, ``torch.set_num_threads(1 | 2)``, glibc malloc thresholds at
1 GiB set before torch is imported. numharden samples each trial's fault list once
before timing and writes it with ``FaultList.save`` (docs/FAULTS.md layout); the torch
campaign reads those lists with h5py and per trial flips the bits of its own copy of the
int codes, sign-extends, decodes the changed values and writes them into the
``nn.Parameter`` in place, evaluates the images in batches of the same size as
numharden (always the whole network), counts correct/SDC, and restores. In the sweep
rows torch gets the same no-change shortcut; in the full-pass rows it runs every
trial (at a BER whose trials all changed some bit the two torch runs are the same
computation, measured once). Fault *sampling* is in numharden's trial time but not in
torch's (see the profile's first line and bench/bench_faults.py).

Breakdown: the 1-thread trials above, grouped by the first layer whose stored weights
changed (where an incremental trial starts recomputing), with their measured ms/trial
incremental (sweep) vs full pass vs torch.

Correctness: before timing, the torch side checks that its faulted raw codes equal the
``new`` codes numharden recorded and that restore is bit-exact; after timing, every
trial's correct and SDC counts of the two campaigns are compared (a pre-activation at a
4-bit rounding boundary may round differently in float32, so an image or two may
differ; the maximum is printed), every incremental (sweep) trial must equal its full
pass, and all numharden runs (1/2 threads, both modes, 2 workers, every repeat) must
agree exactly with each other.

Timing: JIT compile, the clean pass and a warm-up trial per BER, mode and thread count
are excluded. numharden and torch blocks alternate (same trials, same order) repeat by
repeat so load from other processes hits both alike; trials/s of a block = trials / sum
of per-trial times; reported are medians over the repeats. ``numharden/PyTorch`` > 1
means numharden is faster. When a ratio is below the 1.5x target (or with
``--profile``) a per-step breakdown of one full-pass trial follows, numharden next to
torch.
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

from numharden import config  # noqa: E402
from numharden.campaign import CampaignConfig, CampaignStore, run_campaign, trial_seed  # noqa: E402
from numharden.campaign.engine import EngineRunner, FaultSweepSpec  # noqa: E402
from numharden.faults import FaultInjector  # noqa: E402

BUILTIN = "lenet5-fmnist-w4a4"
NORMALIZATION = {"mean": [0.2860], "std": [0.3530]}  # as weights/train_builtin.py
TARGET_RATIO = 1.5
COUNTS = ("correct", "sdc", "nonfinite", "n_faults")
MODES = ("sweep", "full")
MODE_HEADS = {"sweep": "sweep (skip no-change trials, recompute downstream of the change)",
              "full": "full pass (every trial, whole network)"}


# ======================================================================================
# numharden trial variants
# ======================================================================================
def run_full_pass(runner: EngineRunner, ber: float, trial: int, seed: int) -> dict:
    """EngineRunner's weight-fault trial without the no-change shortcut and without the
    recorded activations: the whole network runs."""
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


class FullPassRunner(EngineRunner):
    """Runner of :class:`FullPassSpec`: every weight trial runs the whole network."""

    def __call__(self, ber, trial, seed, group=None):
        if group is not None or self.spec.target != "weights" or ber == 0.0:
            return super().__call__(ber, trial, seed, group=group)
        return run_full_pass(self, ber, trial, seed)


class FullPassSpec(FaultSweepSpec):
    """The sweep spec with full-pass trials (for ``run_campaign(workers=2)``)."""

    def build(self):
        return FullPassRunner(self)


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


def measure(args, runner, spec, full_spec, worker, bers, seeds, zero, tmp):
    """Interleaved numharden / torch blocks.

    Returns ``samples[(impl, ber, cores, mode)]`` -> trials/s per repeat,
    ``results[...]`` -> per repeat the per-trial counts, ``times[...]`` -> per repeat the
    per-trial seconds (this process and torch), worker-run details and the BLAS thread
    count seen at each thread count. impl: 'numharden' (this process), 'workers2'
    (run_campaign, steady rate), 'workers2-e2e' (same runs, end to end), 'torch'
    (measured in mode 'full' only where some trial changed no bit).
    """
    from numharden.kernels import get_blas_threads, set_threads

    samples, results, times, extra = (defaultdict(list), {}, defaultdict(list),
                                      defaultdict(list))
    blas_seen = {}
    n = args.trials

    def keep(key, res, tps, trial_s=None):
        samples[key].append(tps)
        results.setdefault(key, []).append([{k: r[k] for k in COUNTS} for r in res])
        if trial_s is not None:
            times[key].append(list(trial_s))

    def full(b, t, s):
        return run_full_pass(runner, b, t, s)

    for threads in args.threads:
        wait_idle(args.wait_idle)
        set_threads(threads)  # also re-applies numharden's BLAS cap
        blas_seen[threads] = get_blas_threads()
        for ber in bers:  # warm-up at this thread count (injector, fused kernels, oneDNN)
            runner(ber, 0, seeds[ber][0])
            full(ber, 0, seeds[ber][0])
            worker("run", keys=[(ber, 0)], threads=threads, shortcut=False)
        for r in range(args.repeats):
            for ber in bers:
                keys = [(ber, t) for t in range(n)]
                msg = [f"  threads={threads} repeat {r + 1}/{args.repeats} BER {ber:g}:"]
                for mode in MODES:
                    res, ts = nh_block(runner if mode == "sweep" else full, ber, seeds[ber])
                    keep(("numharden", ber, threads, mode), res, n / sum(ts), ts)
                    msg.append(f"numharden {mode} {n / sum(ts):.2f}")
                    if mode == "sweep" or zero[ber]:
                        th = worker("run", keys=keys, threads=threads, shortcut=mode == "sweep")
                        keep(("torch", ber, threads, mode), th["results"],
                             n / sum(th["times"]), th["times"])
                        msg.append(f"torch {mode} {n / sum(th['times']):.2f}")
                    if threads == 2 and args.workers:
                        w = workers_campaign(spec if mode == "sweep" else full_spec, ber, n,
                                             args.seed, tmp / f"w2-{ber!r}-{mode}-{r}")
                        extra[("workers2", ber, mode)].append(
                            {k: w[k] for k in ("wall_s", "startup_s", "worker_trial_s")})
                        keep(("workers2", ber, 2, mode), w["results"], w["steady_tps"])
                        samples[("workers2-e2e", ber, 2, mode)].append(w["e2e_tps"])
                        msg.append(f"--workers 2 {mode} {w['steady_tps']:.2f} steady / "
                                   f"{w['e2e_tps']:.2f} e2e (start-up {w['startup_s']:.1f} s)")
                _log(f"{msg[0]} {', '.join(msg[1:])} trials/s [load {os.getloadavg()[0]:.1f}]")
    return samples, results, times, extra, blas_seen


def torch_mode(mode, ber, zero) -> str:
    """Torch run that serves ``mode``: without a no-change trial both are one computation."""
    return mode if (mode == "sweep" or zero[ber]) else "sweep"


# ======================================================================================
# breakdown: incremental vs full pass by first changed layer (measured)
# ======================================================================================
def first_changed(graph, changed_tensors) -> list:
    """Per trial the first node (graph order) whose weights changed, or None."""
    order = [n.name for n in graph.nodes]
    node_of = {p: n.name for n in graph.nodes for p in n.params.values()}
    return [None if not ch else order[min(order.index(node_of[c]) for c in ch)]
            for ch in changed_tensors]


def breakdown(graph, bers, fault_info, times, zero, threads) -> list:
    """Measured ms/trial of the ``threads``-thread trials, grouped by first changed layer:
    incremental (sweep), full pass, torch full pass; per-trial medians over repeats."""
    def per_trial(key):
        return [statistics.median(rep[t] for rep in times[key])
                for t in range(len(times[key][0]))]

    order = [None] + [n.name for n in graph.nodes]
    out = []
    for ber in bers:
        inc = per_trial(("numharden", ber, threads, "sweep"))
        full = per_trial(("numharden", ber, threads, "full"))
        ref = per_trial(("torch", ber, threads, torch_mode("full", ber, zero)))
        first = first_changed(graph, fault_info[ber]["changed_tensors"])
        groups = defaultdict(list)
        for t, f in enumerate(first):
            groups[f].append(t)
        rows = [(f, groups[f]) for f in order if f in groups] + [("all", range(len(first)))]
        for f, ts in rows:
            i, a, c = (float(np.mean([v[t] for t in ts])) for v in (inc, full, ref))
            out.append({"ber": ber, "first_changed": f, "trials": len(ts),
                        "incremental_s": i, "full_s": a, "torch_s": c})
    return out


def markdown_breakdown(rows, threads, meta) -> str:
    lines = [f"Trials by first changed layer, measured ms/trial ({threads} thread"
             f"{'s' if threads > 1 else ''}; the timed trials above, per-trial medians over "
             f"the repeats, means over the trials of a group). An incremental trial "
             f"recomputes from the first changed layer on, starting from recorded fault-free "
             f"activations ({meta['recorded']}); 'none' = no stored bit changed (the sweep "
             f"skips the trial, PyTorch's full-pass column runs it).", "",
             "| BER | first changed layer | trials | sweep (incremental) ms | full pass ms | "
             "full pass / incremental | PyTorch ms (full pass) | PyTorch / incremental |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = {None: "none", "all": "**all**"}.get(r["first_changed"], r["first_changed"])
        i, a, c = r["incremental_s"], r["full_s"], r["torch_s"]
        lines.append(f"| {r['ber']:g} | {f} | {r['trials']} | {i * 1e3:.2f} | {a * 1e3:.2f} | "
                     f"{a / i:.2f}x | {c * 1e3:.2f} | {c / i:.2f}x |")
    return "\n".join(lines)


# ======================================================================================
# profile: where a full-pass trial's time goes
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
    """Median seconds per step of a full-pass trial (current numba threads)."""
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


def profile(args, runner, worker, ber, trials, seeds):
    """Step breakdown of a full-pass trial at 1 thread, numharden and torch."""
    from numharden.kernels import set_threads

    set_threads(1)
    out = {"ber": ber, "trials": len(trials), "threads": 1}
    _profile_numharden(runner, ber, trials[:1], seeds)  # warm-up
    out["numharden"] = _profile_numharden(runner, ber, trials, seeds)
    out["torch"] = worker("profile", keys=[(ber, t) for t in trials], threads=1)
    return out


def markdown_profile(prof, graph, meta) -> str:
    ours, theirs = prof["numharden"], prof["torch"]
    mods = {k[len("forward: "):] for k in theirs if k.startswith("forward: ")}
    seg = segments_of(graph, mods)
    groups = defaultdict(list)
    for node in graph.nodes:
        groups[seg[node.name]].append(node.name)

    def ms(v):
        return "—" if v is None else f"{v * 1e3:.2f}"

    def line(label, key=None, tkey=None, nodes=None):
        if nodes is not None:
            a = sum(ours.get(f"node {n}", 0.0) for n in nodes)
        else:
            a = ours[key]
        c = theirs.get(tkey) if tkey else None
        return (f"| {label} | {ms(a)} | {a / ours['trial total']:.0%} | {ms(c)} | "
                f"{'—' if not (a and c) else f'{a / c:.2f}x'} |")

    lines = [f"### Where a full-pass trial's time goes (BER {prof['ber']:g}, 1 thread, "
             f"median of {prof['trials']} trials)", "",
             f"numharden with BLAS at {meta['blas_threads']} thread(s) (its own cap); the "
             "per-node timing hook runs numharden's graph unfused (conv, ReLU and "
             "quantiser as separate steps), so its total is above a timed full-pass trial. "
             "Torch forward segments run from one module's forward hook to the next "
             "(functional relu/max-pool fall into the following module's segment).", "",
             "| step | numharden ms | share | PyTorch ms | numharden / PyTorch time |",
             "|---|---:|---:|---:|---:|",
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
            for mode in MODES:
                th = med.get(("torch", ber, cores, torch_mode(mode, ber, zero)))
                if th is None:
                    continue
                hows = [("numharden", "numba 1 thread" if cores == 1
                         else "numba 2 threads, 1 process")]
                if cores == 2 and args.workers:
                    hows += [("workers2", "--workers 2, steady"),
                             ("workers2-e2e", "--workers 2, incl. start-up")]
                for impl, how in hows:
                    tps = med.get((impl, ber, cores, mode))
                    rows.append({"ber": ber, "cores": cores, "mode": mode, "numharden": how,
                                 "numharden_tps": tps, "torch_tps": th,
                                 "ratio": None if tps is None else tps / th})
    return rows


def agreement(bers, results, fault_info, threads):
    """Per BER: torch vs numharden counts, incremental vs full pass, numharden runs
    among themselves."""
    out = []
    for ber in bers:
        ref = results[("numharden", ber, threads, "sweep")][0]
        ours = {k: reps for k, reps in results.items() if k[1] == ber and k[0] != "torch"}
        nh_same = all(res == ref for reps in ours.values() for res in reps)
        inc = [res for k, reps in ours.items() if k[3] == "sweep" for res in reps]
        full = [res for k, reps in ours.items() if k[3] == "full" for res in reps]
        inc_vs_full = sum(all(a[t] == b[t] for a in inc for b in full) for t in range(len(ref)))
        dc = ds = 0
        nf_same = True
        for k, reps in results.items():
            if k[0] != "torch" or k[1] != ber:
                continue
            for res in reps:
                for a, b in zip(ref, res):
                    dc = max(dc, abs(a["correct"] - b["correct"]))
                    ds = max(ds, abs(a["sdc"] - b["sdc"]))
                    nf_same &= a["n_faults"] == b["n_faults"]
        info = fault_info[ber]
        out.append({"ber": ber, "trials": len(ref), "mean_faults": float(np.mean(info["n_faults"])),
                    "zero_change_trials": int(sum(c == 0 for c in info["n_changed"])),
                    "mean_acc": float(np.mean([r["correct"] for r in ref])),
                    "mean_sdc": float(np.mean([r["sdc"] for r in ref])),
                    "max_dcorrect": dc, "max_dsdc": ds, "n_faults_equal": nf_same,
                    "incremental_equals_full_trials": int(inc_vs_full),
                    "numharden_runs_identical": nh_same})
    return out


def _num(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def markdown(rows, agree, meta) -> str:
    blas = meta["blas_threads"]
    lines = [f"LeNet-5 w4a4 fault campaign, {meta['images']} Fashion-MNIST test images per trial, "
             f"weight bit flips in the conv/linear weights ({meta['n_bits']:,} bits), "
             f"{meta['trials']} trials per BER, medians over {meta['repeats']} interleaved "
             f"repeats; {meta['cpu']}, 2 cores shared with other jobs (load average "
             f"{meta['load_before']:.1f} before, {meta['load_after']:.1f} after). numharden "
             f"{meta['numharden']} (numba {meta['numba']}, {meta['threading_layer']}; numpy "
             f"BLAS at {'?' if blas is None else blas} thread(s) in effect, "
             f"NUMHARDEN_BLAS_THREADS={meta['blas_env'] or 'unset'}; recorded activations "
             f"budget {meta['cache_mb']:g} MiB), PyTorch {meta['torch']} eager "
             f"(channels_last, inference_mode, malloc thresholds 1 GiB), batch "
             f"{meta['batch_size']} on both sides. PyTorch runs the whole network in every "
             f"trial, skipping no-change trials in the sweep rows.", ""]
    if meta.get("note"):
        lines += [f"Note: {meta['note']}.", ""]
    lines += ["| BER | cores | trials | numharden | numharden trials/s | PyTorch trials/s | "
              "numharden/PyTorch |", "|---|---:|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['ber']:g} | {r['cores']} | {MODE_HEADS[r['mode']]} | "
                     f"{r['numharden']} | {_num(r['numharden_tps'])} | {r['torch_tps']:.2f} | "
                     f"{_num(r['ratio'])} |")
    lines += ["", "Agreement, per trial (numharden vs the torch campaign replaying the same "
              "fault lists; incremental = sweep trials, compared with the full passes of "
              "the same trials):", "",
              "| BER | trials | mean faults | no-change trials | mean accuracy | mean SDC "
              "images | max abs d(correct) | max abs d(SDC) | fault counts equal | "
              "incremental == full pass | numharden runs identical |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for a in agree:
        same = a["incremental_equals_full_trials"]
        inc = (f"yes ({same}/{a['trials']})" if same == a["trials"]
               else f"NO ({a['trials'] - same} of {a['trials']} trials differ)")
        lines.append(f"| {a['ber']:g} | {a['trials']} | {a['mean_faults']:.1f} | "
                     f"{a['zero_change_trials']} | {a['mean_acc'] / meta['images']:.4f} | "
                     f"{a['mean_sdc']:.1f} | {a['max_dcorrect']} | {a['max_dsdc']} | "
                     f"{'yes' if a['n_faults_equal'] else 'NO'} | {inc} | "
                     f"{'yes' if a['numharden_runs_identical'] else 'NO'} |")
    lines += ["", f"Clean predictions differing between numharden and torch: "
              f"{meta['clean_disagree']} of {meta['images']}; torch faulted codes vs "
              f"numharden's recorded codes, restore: {meta['verify_mismatches']} mismatches."]
    return "\n".join(lines)


def recorded(runner) -> tuple[list, float]:
    """(node names, MiB) of the fault-free activations the runner keeps."""
    kept = runner._kept or []
    names = sorted(kept[0]) if kept else []
    return names, sum(a.nbytes for rec in kept for a in rec.values()) / 2 ** 20


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
    p.add_argument("--json", type=Path, help="also write rows, agreement, breakdown, "
                                             "profile, metadata")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.trials, args.repeats, args.profile_trials = 2000, 4, 1, 2
    if args.trials < 1 or args.repeats < 1:
        p.error("need --trials >= 1 and --repeats >= 1")
    args.threads = sorted(set(args.threads))
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
        spec, full_spec = FaultSweepSpec(**kw), FullPassSpec(**kw)
        from numharden.kernels import set_threads
        set_threads(1)
        _log("building the runner (model, data, JIT, clean pass, recorded activations) ...")
        runner = spec.build()
        seeds = {b: [trial_seed(args.seed, b, t) for t in range(args.trials)] for b in bers}
        fault_info = export_faults(runner, bers, seeds, tmp / "faults.h5")
        zero = {b: any(c == 0 for c in fault_info[b]["n_changed"]) for b in bers}
        model = runner.model
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
            samples, results, times, extra, blas_seen = measure(
                args, runner, spec, full_spec, worker, bers, seeds, zero, tmp)
            rows = build_rows(args, samples, bers, zero)
            ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
            prof = None
            if args.profile or (not args.no_profile and min(ratios) < TARGET_RATIO):
                pber = bers[len(bers) // 2]
                _log(f"profiling BER {pber:g} ...")
                prof = profile(args, runner, worker, pber,
                               list(range(min(args.profile_trials, args.trials))), seeds)
        finally:
            worker.close()
    bthreads = args.threads[0]
    agree = agreement(bers, results, fault_info, bthreads)
    brk = breakdown(model.graph, bers, fault_info, times, zero, bthreads)
    names, mib = recorded(runner)
    blas = set(blas_seen.values())
    meta = {"cpu": _cpu_name(), "numharden": numharden.__version__, "numba": numba.__version__,
            "threading_layer": numba.threading_layer(), "torch": info["torch"],
            "python": platform.python_version(), "model": args.model, "note": note,
            "images": len(runner.labels), "batch_size": runner.bs, "trials": args.trials,
            "repeats": args.repeats, "seed": args.seed,
            "blas_threads": blas.pop() if len(blas) == 1 else blas_seen,
            "blas_env": os.environ.get("NUMHARDEN_BLAS_THREADS"),
            "cache_mb": config.get("campaign_cache_mb"), "recorded_nodes": names,
            "recorded": (f"outputs of {', '.join(names)}: {mib:.1f} MiB" if names else
                         "none recorded (campaign_cache_mb 0 or too small), so "
                         "incremental trials are full passes"),
            "n_bits": fault_info[bers[0]]["n_bits"],
            "clean_disagree": int((info["clean_preds"] != runner.clean).sum()),
            "verify_mismatches": int(mismatches), "load_before": load_before,
            "load_after": os.getloadavg()[0]}
    print(markdown(rows, agree, meta))
    print()
    print(markdown_breakdown(brk, bthreads, meta))
    if prof is not None:
        print()
        print(markdown_profile(prof, model.graph, meta))
    if args.json:
        args.json.write_text(json.dumps(
            {"meta": meta, "rows": rows, "agreement": agree, "breakdown": brk,
             "profile": prof,
             "samples": [{"impl": k[0], "ber": k[1], "cores": k[2], "mode": k[3],
                          "trials_per_s": v} for k, v in samples.items()],
             "trial_seconds": [{"impl": k[0], "ber": k[1], "cores": k[2], "mode": k[3],
                                "per_repeat": v} for k, v in times.items()],
             "workers": [{"ber": k[1], "mode": k[2], "runs": v} for k, v in extra.items()],
             "faults": {repr(b): v for b, v in fault_info.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
