"""Benchmark: one epoch of 4-bit LeNet-5 QAT on Fashion-MNIST, numharden vs PyTorch eager.

numharden: ``zoo.build('lenet5', weight_format='int4/ch', abits=4)`` trained with
:func:`numharden.train.train` machinery (PlainStep + SGD), batch 128, the 60k training
images. PyTorch: the same network (per-channel symmetric int4 weight fake-quant with a
straight-through estimator, PACT 4-bit activation quantisers after every ReLU),
channels_last, eager mode, same optimizer and batch size. Both skip a few warm-up steps
(JIT compilation, allocator warm-up) before timing.

Run::

    python bench/bench_train.py [--epochs 1] [--images 60000] [--threads 0]

It prints per-epoch wall time and images/s for each engine, their medians and the
numharden / PyTorch throughput ratio. PyTorch is a dev-only dependency: it is imported
here only, after glibc malloc is told not to return memory to the OS
(MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_, set by re-executing this script), which
otherwise dominates PyTorch's eager step time on small tensors. numpy's BLAS pool is
capped (--blas-threads, default 1) the same way. Wall-clock numbers on a shared machine
are only meaningful at low load: the header prints the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}

MEAN, STD = 0.2860, 0.3530
BATCH = 128
WARMUP = 5
SGD = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}


# --- PyTorch twin (dev-only) ------------------------------------------------------------

def torch_lenet(wbits: int = 4, abits: int = 4, clips=(6.0, 6.0, 6.0, 6.0), seed: int = 0):
    """LeNet-5 with per-channel symmetric weight fake-quant and PACT activation quantisers,
    parameter names as numharden's zoo (conv1, conv2, fc1, fc2, fc3, reluK_q.clip)."""
    import torch
    from torch import nn

    qmax = 2 ** (wbits - 1) - 1

    def fq(w):
        s = w.detach().abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / qmax
        s = torch.where(s > 0, s, torch.ones_like(s))
        q = torch.clamp(torch.round(w / s), -qmax, qmax) * s
        return w + (q - w).detach()  # straight-through estimator

    class PACT(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, clip):
            ctx.save_for_backward(x, clip)
            s = clip / (2 ** abits - 1)
            return torch.round(torch.minimum(torch.clamp(x, min=0), clip) / s) * s

        @staticmethod
        def backward(ctx, g):
            x, clip = ctx.saved_tensors
            inside = (x >= 0) & (x <= clip)
            return g * inside, (g * (x > clip)).sum().reshape(clip.shape)

    class QConv(nn.Conv2d):
        def forward(self, x):
            return self._conv_forward(x, fq(self.weight), self.bias)

    class QLinear(nn.Linear):
        def forward(self, x):
            return nn.functional.linear(x, fq(self.weight), self.bias)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = QConv(1, 6, 5, padding=2)
            self.conv2 = QConv(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = QLinear(400, 120), QLinear(120, 84), QLinear(84, 10)
            self.clips = nn.ParameterDict({f"relu{k + 1}_q": nn.Parameter(
                torch.tensor([float(c)])) for k, c in enumerate(clips)})

        def act(self, k, x):
            return PACT.apply(torch.relu(x), self.clips[f"relu{k}_q"])

        def forward(self, x):
            x = nn.functional.max_pool2d(self.act(1, self.conv1(x)), 2)
            x = nn.functional.max_pool2d(self.act(2, self.conv2(x)), 2)
            x = torch.flatten(x, 1)
            x = self.act(4, self.fc2(self.act(3, self.fc1(x))))
            return self.fc3(x)

    torch.manual_seed(seed)
    return Net().to(memory_format=torch.channels_last)


def torch_optimizer(net, spec=SGD):
    """SGD with the same groups as numharden: no weight decay on biases and clips."""
    import torch
    decay = [p for n, p in net.named_parameters() if n.endswith("weight")]
    rest = [p for n, p in net.named_parameters() if not n.endswith("weight")]
    return torch.optim.SGD([{"params": decay}, {"params": rest, "weight_decay": 0.0}],
                           lr=spec["lr"], momentum=spec["momentum"],
                           nesterov=spec["nesterov"], weight_decay=spec["weight_decay"])


def torch_epoch(net, opt, images, labels, rng, *, warmup: int = 0) -> float:
    """One shuffled epoch; returns the wall time of the steps after ``warmup``."""
    import torch
    x_all = torch.from_numpy(((images.astype("float32") / 255.0) - MEAN) / STD)
    y_all = torch.from_numpy(labels)
    order = torch.from_numpy(rng.permutation(len(labels)))
    net.train()
    t0 = None
    for i, start in enumerate(range(0, len(labels), BATCH)):
        if i == warmup:
            t0 = time.perf_counter()
        sel = order[start:start + BATCH]
        x = x_all[sel].contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y_all[sel])
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


# --- numharden ----------------------------------------------------------------------------

def numharden_epoch(trainable, opt, data, rng, *, warmup: int = 0) -> float:
    from numharden.train import PlainStep
    step = PlainStep()
    t0 = None
    for i, (images, labels) in enumerate(data.batches(BATCH, rng)):
        if i == warmup:
            t0 = time.perf_counter()
        step(trainable, opt, trainable.normalize(images), labels)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs per engine")
    ap.add_argument("--images", type=int, default=60000, help="training images per epoch")
    ap.add_argument("--threads", type=int, default=0, help="threads for both (0 = all)")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="numpy's OpenBLAS pool (numharden's small linear layers); a second "
                         "spinning pool next to numba's contends for the cores (default 1)")
    ap.add_argument("--skip-torch", action="store_true")
    args = ap.parse_args()

    import numpy as np
    from numharden.data import load_dataset
    from numharden.kernels import set_threads
    from numharden.models import zoo
    from numharden.train import Trainable, make_optimizer

    threads = set_threads(args.threads)
    data = load_dataset("fashion-mnist", split="train").subset(args.images)
    n_timed = len(data) - WARMUP * BATCH
    print(f"LeNet-5 int4/ch weights, 4-bit activations, batch {BATCH}, {len(data)} images "
          f"per epoch ({n_timed} timed), {threads} thread(s), numpy BLAS threads "
          f"{os.environ.get('OPENBLAS_NUM_THREADS')}, load average {os.getloadavg()[0]:.2f}")

    model = zoo.build("lenet5", weight_format="int4/ch", abits=4, seed=0,
                      meta={"normalization": {"mean": [MEAN], "std": [STD]}})
    trainable = Trainable(model)
    opt = make_optimizer(dict(SGD), trainable.params, trainable.kinds)
    rng = np.random.default_rng(0)
    tail = len(data) % BATCH
    if tail:  # compile shape-specific kernel variants of the last, partial batch untimed
        from numharden.train import PlainStep
        PlainStep()(trainable, opt, trainable.normalize(data.images[:tail]), data.labels[:tail])
    nh = [numharden_epoch(trainable, opt, data, rng, warmup=WARMUP) for _ in range(args.epochs)]
    for k, t in enumerate(nh):
        print(f"  numharden epoch {k + 1}: {t:7.2f} s  {n_timed / t:8.0f} images/s")
    med_nh = statistics.median(nh)
    print(f"numharden median: {med_nh:.2f} s/epoch, {n_timed / med_nh:.0f} images/s")
    if args.skip_torch:
        return

    import torch
    torch.set_num_threads(threads)
    net = torch_lenet()
    topt = torch_optimizer(net)
    rng = np.random.default_rng(0)
    th = [torch_epoch(net, topt, data.images, data.labels, rng, warmup=WARMUP)
          for _ in range(args.epochs)]
    for k, t in enumerate(th):
        print(f"  pytorch   epoch {k + 1}: {t:7.2f} s  {n_timed / t:8.0f} images/s")
    med_th = statistics.median(th)
    print(f"pytorch {torch.__version__} median: {med_th:.2f} s/epoch, "
          f"{n_timed / med_th:.0f} images/s")
    print(f"ratio numharden/pytorch throughput: {med_th / med_nh:.2f}x "
          f"(numharden takes {med_nh / med_th:.2f}x the time)")


def _blas_threads(argv) -> str:
    for i, a in enumerate(argv):
        if a.startswith("--blas-threads"):
            return a.split("=", 1)[1] if "=" in a else argv[i + 1]
    return "1"


if __name__ == "__main__":
    # malloc thresholds and the BLAS pool size are read at process start (before torch
    # and numpy load), so set them and re-execute once
    env = _MALLOC | {"OPENBLAS_NUM_THREADS": _blas_threads(sys.argv[1:])}
    if any(os.environ.get(k) != v for k, v in env.items()):
        os.execve(sys.executable, [sys.executable] + sys.argv, os.environ | env)
    main()
