"""Per-layer convolution benchmark: numharden.ops against PyTorch conv2d in the same run.

Usage: python bench/bench_ops.py [--threads 1,2] [--batch 256] [--sets resnet20,resnet18,lenet5]
       [--repeat 5] [--backward] [--json out.json]

Shapes are the convolutions of ResNet-20 and ResNet-18 (CIFAR, 3x32x32) and LeNet-5
(1x28x28). PyTorch runs channels_last with the glibc malloc thresholds raised (the script
re-executes itself to set them before torch is imported) and ``torch.set_num_threads``
equal to ours. Each timing is the median of ``--repeat`` calls after one warm-up call
(JIT compilation excluded), the two libraries interleaved. ``ratio`` = torch time / our
time (> 1: numharden faster); ``maxdiff`` = max |ours - torch| on the outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

_ENV = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
if any(os.environ.get(k) != v for k, v in _ENV.items()):
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **_ENV})

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from numharden import ops  # noqa: E402
from numharden.kernels import set_threads  # noqa: E402

# name, Ci, Co, H(=W), kernel, stride, padding, groups
LAYERS = {
    "resnet20": [
        ("conv1", 3, 16, 32, 3, 1, 1, 1),
        ("layer1.conv", 16, 16, 32, 3, 1, 1, 1),
        ("layer2.0.conv1", 16, 32, 32, 3, 2, 1, 1),
        ("layer2.conv", 32, 32, 16, 3, 1, 1, 1),
        ("layer2.0.downsample", 16, 32, 32, 1, 2, 0, 1),
        ("layer3.0.conv1", 32, 64, 16, 3, 2, 1, 1),
        ("layer3.conv", 64, 64, 8, 3, 1, 1, 1),
        ("layer3.0.downsample", 32, 64, 16, 1, 2, 0, 1),
    ],
    "resnet18": [
        ("conv1", 3, 64, 32, 3, 1, 1, 1),
        ("layer1.conv", 64, 64, 32, 3, 1, 1, 1),
        ("layer2.0.conv1", 64, 128, 32, 3, 2, 1, 1),
        ("layer2.conv", 128, 128, 16, 3, 1, 1, 1),
        ("layer2.0.downsample", 64, 128, 32, 1, 2, 0, 1),
        ("layer3.0.conv1", 128, 256, 16, 3, 2, 1, 1),
        ("layer3.conv", 256, 256, 8, 3, 1, 1, 1),
        ("layer3.0.downsample", 128, 256, 16, 1, 2, 0, 1),
        ("layer4.0.conv1", 256, 512, 8, 3, 2, 1, 1),
        ("layer4.conv", 512, 512, 4, 3, 1, 1, 1),
        ("layer4.0.downsample", 256, 512, 8, 1, 2, 0, 1),
    ],
    "lenet5": [
        ("conv1", 1, 6, 28, 5, 1, 2, 1),
        ("conv2", 6, 16, 14, 5, 1, 0, 1),
    ],
    "mobilenet": [
        ("dw32", 32, 32, 32, 3, 1, 1, 32),
        ("dw96.s2", 96, 96, 16, 3, 2, 1, 96),
        ("dw192", 192, 192, 8, 3, 1, 1, 192),
        ("pw32-16", 32, 16, 32, 1, 1, 0, 1),
        ("pw96-24", 96, 24, 16, 1, 1, 0, 1),
    ],
}


def _median_pair(f_ours, f_torch, repeat):
    f_ours()
    f_torch()  # warm-up: JIT compile, allocator
    t_o, t_t = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        f_ours()
        t_o.append(time.perf_counter() - t)
        t = time.perf_counter()
        f_torch()
        t_t.append(time.perf_counter() - t)
    return float(np.median(t_o)), float(np.median(t_t))


def bench_layer(layer, batch, repeat, backward, rng):
    name, Ci, Co, H, K, s, p, g = layer
    x = rng.standard_normal((batch, H, H, Ci)).astype(np.float32)
    w = (rng.standard_normal((K, K, Ci // g, Co)) / np.sqrt(K * K * Ci // g)).astype(np.float32)
    b = rng.standard_normal(Co).astype(np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # channels_last view of the same data
    wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
    bt = torch.from_numpy(b)
    kw = dict(stride=s, padding=p, groups=g)
    Ho = (H + 2 * p - K) // s + 1
    flops = 2.0 * batch * Ho * Ho * Co * (Ci // g) * K * K
    rows = []
    with torch.no_grad():
        t_o, t_t = _median_pair(lambda: ops.conv2d(x, w, b, **kw),
                                lambda: F.conv2d(xt, wt, bt, s, p, 1, g), repeat)
        diff = np.abs(ops.conv2d(x, w, b, **kw)
                      - F.conv2d(xt, wt, bt, s, p, 1, g).permute(0, 2, 3, 1).numpy()).max()
    rows.append(dict(layer=name, pass_="forward", ms=t_o * 1e3, torch_ms=t_t * 1e3,
                     gflops=flops / t_o / 1e9, torch_gflops=flops / t_t / 1e9,
                     ratio=t_t / t_o, maxdiff=float(diff)))
    if backward:
        gy = rng.standard_normal((batch, Ho, Ho, Co)).astype(np.float32)
        gyt = torch.from_numpy(gy).permute(0, 3, 1, 2)
        for which, mask in (("grad_input", (True, False, False)),
                            ("grad_weight", (False, True, True))):
            if which == "grad_input" and Ci == 1 or which == "grad_input" and name == "conv1":
                continue  # the image needs no gradient
            need = dict(need_x=mask[0], need_w=mask[1], need_b=mask[2])

            def ours():
                return ops.conv2d_vjp(gy, x, w, **kw, **need)

            def theirs():
                return torch.ops.aten.convolution_backward(
                    gyt, xt, wt, [Co], [s, s], [p, p], [1, 1], False, [0, 0], g, list(mask))
            t_o, t_t = _median_pair(ours, theirs, repeat)
            mine, ref = ours(), theirs()
            if mask[0]:
                diff = np.abs(mine[0] - ref[0].permute(0, 2, 3, 1).numpy()).max()
            else:
                diff = np.abs(mine[1] - ref[1].permute(2, 3, 1, 0).numpy()).max()
            rows.append(dict(layer=name, pass_=which, ms=t_o * 1e3, torch_ms=t_t * 1e3,
                             gflops=flops / t_o / 1e9, torch_gflops=flops / t_t / 1e9,
                             ratio=t_t / t_o, maxdiff=float(diff)))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--sets", default="resnet20,resnet18,lenet5")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backward", action="store_true", help="also time conv2d_vjp")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    results = []
    for nt in (int(t) for t in args.threads.split(",")):
        set_threads(nt)
        torch.set_num_threads(nt)
        for net in args.sets.split(","):
            print(f"\n{net}, batch {args.batch}, {nt} thread(s)")
            print(f"{'layer':22s} {'pass':11s} {'ms':>8s} {'torch ms':>9s} {'GFLOP/s':>8s} "
                  f"{'torch':>7s} {'ratio':>6s} {'maxdiff':>9s}")
            tot_o = tot_t = 0.0
            rng = np.random.default_rng(0)
            for layer in LAYERS[net]:
                for r in bench_layer(layer, args.batch, args.repeat, args.backward, rng):
                    r.update(net=net, threads=nt, batch=args.batch)
                    results.append(r)
                    if r["pass_"] == "forward":
                        tot_o, tot_t = tot_o + r["ms"], tot_t + r["torch_ms"]
                    print(f"{r['layer']:22s} {r['pass_']:11s} {r['ms']:8.2f} {r['torch_ms']:9.2f} "
                          f"{r['gflops']:8.1f} {r['torch_gflops']:7.1f} {r['ratio']:6.2f} "
                          f"{r['maxdiff']:9.2e}", flush=True)
            print(f"{'sum of distinct fwd layers':34s} {tot_o:8.2f} {tot_t:9.2f} "
                  f"{'':17s}{tot_t / tot_o:6.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
