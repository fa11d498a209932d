"""Benchmark: crossbar cell draw on ResNet-18-sized int8 weights, and a LeNet-5 variation
trial against a bit-fault trial, both measured in the same run (medians, JIT excluded).

    python bench/bench_crossbar.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench_faults import resnet18_shapes
from numharden.crossbar import CrossbarInjector, VariationSpec
from numharden.formats import parse_format
from numharden.kernels import set_threads


def median_time(fn, repeats):
    fn()  # JIT / caches
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    set_threads(a.threads)
    rng = np.random.default_rng(0)
    fmt = parse_format("int8/ch")
    params = {n: fmt.encode(rng.normal(size=s).astype(np.float32))
              for n, s in resnet18_shapes().items() if n.endswith("weight") and len(s) > 1}
    n = sum(t.size for t in params.values())
    print(f"ResNet-18 conv/fc weights: {n / 1e6:.2f}M, threads {a.threads}")
    for mapping in ("offset", "differential"):
        inj = CrossbarInjector(params, VariationSpec("lognormal", 0.1, cell_bits=2,
                                                     mapping=mapping))
        t = median_time(lambda: inj.draw(np.random.default_rng(1)), a.repeats)
        print(f"  draw, 2-bit slices, {mapping:12s} {inj.n_cells / 1e6:6.1f}M cells: "
              f"{1e3 * t:8.1f} ms  ({1e9 * t / inj.n_cells:.2f} ns/cell)")
        te = median_time(lambda: inj.effective(inj.draw(np.random.default_rng(1))), a.repeats)
        print(f"  draw + effective weights ({mapping}): {1e3 * te:8.1f} ms")

    from numharden.campaign.engine import FaultSweepSpec
    from numharden.campaign.variation import VariationSweepSpec
    from numharden.campaign import trial_seed
    common = dict(model="lenet5-fmnist-w4a4", images=2000)
    var = VariationSweepSpec(**common, variation=VariationSpec("lognormal").to_dict(),
                             quantity="sigma").build()
    ber = FaultSweepSpec(**common).build()
    tv = median_time(lambda: var(0.1, 0, trial_seed(0, 0.1, 0)), a.repeats)
    tb = median_time(lambda: ber(1e-3, 0, trial_seed(0, 1e-3, 0)), a.repeats)
    print(f"LeNet-5 trial on 2000 images: variation (sigma 0.1) {1e3 * tv:.1f} ms, "
          f"bit faults (BER 1e-3) {1e3 * tb:.1f} ms, ratio {tv / tb:.2f}")


if __name__ == "__main__":
    main()
