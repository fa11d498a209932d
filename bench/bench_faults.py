"""Benchmark: weight-fault trial (sample + apply + undo) on ResNet-18-sized fp32 tensors.

Compares numharden's O(faults) injector with a per-bit Bernoulli mask baseline measured in
the same run, and measures the sparse/dense crossover of the sampler (DENSE_RATE).

    python bench/bench_faults.py [--trials 200] [--ber 1e-5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from numharden.faults import FaultInjector, FaultModel, sampling
from numharden.formats import parse_format


def resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """PyTorch state_dict shapes of torchvision resnet18 (11.69M parameters + BN stats)."""
    s: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(p, c):
        for r in ("weight", "bias", "running_mean", "running_var"):
            s[f"{p}.{r}"] = (c,)

    bn("bn1", 64)
    cin = 64
    for li, c in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p = f"layer{li}.{b}"
            first = cin if b == 0 else c
            s[f"{p}.conv1.weight"] = (c, first, 3, 3)
            bn(f"{p}.bn1", c)
            s[f"{p}.conv2.weight"] = (c, c, 3, 3)
            bn(f"{p}.bn2", c)
            if b == 0 and first != c:
                s[f"{p}.downsample.0.weight"] = (c, first, 1, 1)
                bn(f"{p}.downsample.1", c)
        cin = c
    s["fc.weight"], s["fc.bias"] = (1000, 512), (1000,)
    return s


def median_ms(fn, trials: int) -> float:
    fn()  # JIT compile / warm caches, not timed
    t = []
    for _ in range(trials):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(t))


def baseline_trial(tensors, p, rng, chunk=1 << 17):
    """Per-bit Bernoulli: one uniform per stored bit, packed into XOR masks; undo = XOR."""
    n = 0
    for t in tensors.values():
        raw = t.raw().reshape(-1)
        for s in range(0, raw.size, chunk):
            flips = rng.random((min(chunk, raw.size - s), 32), dtype=np.float32) < p
            mask = np.packbits(flips, axis=1, bitorder="little").view(np.uint32).ravel()
            n += int(np.count_nonzero(flips))
            raw[s:s + len(mask)] ^= mask
            raw[s:s + len(mask)] ^= mask  # undo
        t.touch()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--baseline-trials", type=int, default=3)
    ap.add_argument("--ber", type=float, default=1e-5)
    a = ap.parse_args()

    rng = np.random.default_rng(0)
    fp32 = parse_format("fp32")
    tensors = {k: fp32.encode(rng.standard_normal(v).astype(np.float32))
               for k, v in resnet18_shapes().items()}
    clean = {k: t.raw().copy() for k, t in tensors.items()}
    n_params = sum(t.size for t in tensors.values())
    inj = FaultInjector(tensors, FaultModel(a.ber))
    print(f"tensors: {len(tensors)}, values: {n_params:,}, bits: {inj.n_bits:,}, BER {a.ber:g}, "
          f"expected faults {inj.n_bits * a.ber:,.0f}")

    rs = np.random.default_rng(1)
    state = {}

    def sample():
        state["fl"] = inj.sample(rs)

    def trial():
        inj.undo(inj.apply(inj.sample(rs)))

    t_sample = median_ms(sample, a.trials)
    fl = state["fl"]
    t_apply = median_ms(lambda: inj.undo(inj.apply(fl)), a.trials)
    t_trial = median_ms(trial, a.trials)
    assert all(np.array_equal(tensors[k].raw(), clean[k]) for k in tensors)
    t_base = median_ms(lambda: baseline_trial(tensors, a.ber, rs), a.baseline_trials)
    assert all(np.array_equal(tensors[k].raw(), clean[k]) for k in tensors)
    print(f"numharden sample            median {t_sample:8.3f} ms  ({len(fl)} faults)")
    print(f"numharden apply + undo      median {t_apply:8.3f} ms")
    print(f"numharden sample+apply+undo median {t_trial:8.3f} ms")
    print(f"per-bit Bernoulli baseline  median {t_base:8.1f} ms  ({a.baseline_trials} runs)")
    print(f"speed-up: {t_base / t_trial:,.0f}x")

    # sparse (geometric skipping) vs dense (uniform per bit) sampler on 2**22 bits
    n = 1 << 22
    saved = sampling.DENSE_RATE
    print(f"\nsampler paths on n = {n:,} bits (median ms):   p    sparse    dense")
    try:
        for p in (0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5):
            sampling.DENSE_RATE = 2.0
            ts = median_ms(lambda: sampling.bernoulli_positions(n, p, rs), 7)
            sampling.DENSE_RATE = 0.0
            td = median_ms(lambda: sampling.bernoulli_positions(n, p, rs), 7)
            print(f"{'':44s}{p:5.2f} {ts:8.2f} {td:8.2f}")
    finally:
        sampling.DENSE_RATE = saved
    print(f"current DENSE_RATE = {saved}")


if __name__ == "__main__":
    main()
