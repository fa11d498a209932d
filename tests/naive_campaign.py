"""Independent references for the campaign machinery (slow, obvious loop twins).

Nothing here imports numharden.campaign's planner, statistics or store: the references
use plain loops, scipy and the documented formulas, so a test comparing the library
with them can fail.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import scipy.stats

from numharden.campaign.synthetic import SyntheticSpec


# ------------------------------------------------------------------ seeds
def naive_trial_seed(campaign_seed, ber, trial, group=None):
    """The documented seed recipe, spelled out."""
    bits = struct.unpack("<Q", struct.pack("<d", float(ber) + 0.0))[0]
    key = [bits, trial]
    if group is not None:
        tag = ("s:" + group) if isinstance(group, str) else ("i:" + str(group))
        key.append(int.from_bytes(hashlib.sha256(tag.encode()).digest()[:8], "little"))
    words = np.random.SeedSequence(campaign_seed, spawn_key=key).generate_state(2, np.uint64)
    return int(words[0]) + int(words[1]) * 2 ** 64


# ------------------------------------------------------------------ statistics
def naive_t_interval(values, confidence=0.95):
    """(mean, lo, hi, half) by loops and scipy's t quantile; unclipped."""
    n = len(values)
    mean = 0.0
    for v in values:
        mean += v
    mean /= n
    ss = 0.0
    for v in values:
        ss += (v - mean) ** 2
    sd = math.sqrt(ss / (n - 1))
    half = scipy.stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, half


def naive_interval(values, confidence=0.95):
    """Reference of mean_interval on [0, 1]: t interval, or the zero-variance bound."""
    if len(values) >= 2 and len(set(values)) > 1:
        mean, lo, hi, half = naive_t_interval(values, confidence)
        return mean, max(0.0, lo), min(1.0, hi), half
    m = values[0]
    # Clopper-Pearson upper limit for 0 events in n trials, from scipy's beta quantile
    q = scipy.stats.beta.ppf(1 - (1 - confidence) / 2, 1, len(values))
    return m, m - q * m, m + q * (1 - m), max(q * m, q * (1 - m))


# ------------------------------------------------------------------ synthetic closed forms
def synthetic_expected(spec: SyntheticSpec, ber: float, group=None) -> dict:
    """Exact expectations of the per-trial quantities of a SyntheticSpec.

    With ``E ~ Binomial(n_bits, q)``, ``q = ber (1 - mask_prob)`` effective faults,
    ``E[z**E] = (1 - q + q z)**n_bits``.
    """
    scale = 1.0
    for g, s in spec.group_scale:
        if g == group and type(g) is type(group):
            scale = s
    h = min(1.0, spec.hit_prob * scale)
    q = ber * (1 - spec.mask_prob)
    n = spec.n_bits
    survive = (1 - q + q * (1 - spec.nan_prob) * (1 - h)) ** n
    a0 = round(spec.base_acc * spec.n_images) / spec.n_images
    return {"acc": a0 * survive, "sdc": 1 - survive,
            "nonfinite": 1 - (1 - q + q * (1 - spec.nan_prob)) ** n,
            "faults": n * ber, "masked": n * ber * spec.mask_prob}


# ------------------------------------------------------------------ campaign twin
def naive_campaign(spec, bers, trials, seed, ci_width=None, max_trials=None,
                   round_size=None, groups=None, confidence=0.95):
    """Run a whole campaign in one loop: ``{(group, ber, trial): result dict}``.

    Adaptive cells add ``round_size`` trials while the scipy-based half-width of the
    accuracy interval exceeds ``ci_width`` (BER 0 cells never grow).
    """
    runner = spec.build()

    def run(g, b, t):
        s = naive_trial_seed(seed, b, t, g)
        return runner(b, t, s) if g is None else runner(b, t, s, group=g)

    out = {(None, 0.0, 0): run(None, 0.0, 0)}
    for g in (groups if groups is not None else [None]):
        for b in bers:
            n = trials
            res = [run(g, b, t) for t in range(n)]
            while ci_width is not None and b != 0.0 and n < max_trials:
                accs = [r["correct"] / r["n_images"] for r in res]
                if naive_interval(accs, confidence)[3] <= ci_width:
                    break
                extra = min(round_size or trials, max_trials - n)
                res += [run(g, b, t) for t in range(n, n + extra)]
                n += extra
            for t, r in enumerate(res):
                out[(g, b, t)] = r
    return out


def read_records(store_dir) -> dict:
    """All complete record lines of a store, keyed like the library (no CRC check)."""
    out = {}
    for f in sorted((Path(store_dir) / "records").glob("*.jsonl")):
        for line in f.read_bytes().split(b"\n")[:-1]:
            rec = json.loads(line.rsplit(b"\t", 1)[0])
            out[(rec["group"], rec["ber"], rec["trial"])] = rec
    return out


RESULT_KEYS = ("correct", "sdc", "nonfinite", "n_faults", "n_masked", "n_images")


def results_of(records: dict) -> dict:
    """Strip store metadata: ``key -> (seed, counts...)``."""
    return {k: (r["seed"],) + tuple(r[f] for f in RESULT_KEYS) for k, r in records.items()}


# ------------------------------------------------------------------ build counting
class CountingSpec(SyntheticSpec):
    """SyntheticSpec that leaves one file per ``build()`` in ``log_dir`` (pid in name)."""

    def __init__(self, log_dir, **kw):
        super().__init__(**kw)
        object.__setattr__(self, "log_dir", str(log_dir))

    def __reduce__(self):
        kw = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return (_make_counting, (self.log_dir, kw))

    def build(self):
        Path(self.log_dir, f"build-{os.getpid()}-{os.urandom(4).hex()}").touch()
        return super().build()


def _make_counting(log_dir, kw):
    return CountingSpec(log_dir, **kw)


def builds(log_dir) -> list:
    """PIDs of the processes that built a runner, one entry per build."""
    return [int(p.name.split("-")[1]) for p in Path(log_dir).glob("build-*")]
