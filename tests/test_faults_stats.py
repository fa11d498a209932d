"""Statistical tests of fault sampling.

Every test uses a fixed seed, so it is deterministic; the stated false-alarm rate is the
probability that a *correct* sampler would fail it for a random seed: each hypothesis
test rejects at p < 1e-3 (tests with several hypotheses say so).
"""

import numpy as np
import pytest
from scipy import stats

from numharden.faults import (
    DENSE_RATE,
    SA0,
    SA1,
    FaultInjector,
    FaultModel,
    bernoulli_positions,
    inject_faults,
    undo_faults,
)
from numharden.formats import parse_format

ALPHA = 1e-3


def make_targets():
    rng = np.random.default_rng(0)
    return {
        "a": parse_format("fp32").encode(rng.standard_normal((10, 6))),  # 1920 bits
        "b": parse_format("int4").encode(rng.standard_normal(100)),  # 400 bits
        "c": parse_format("bf16").encode(rng.standard_normal(40)),  # 640 bits
        "d": parse_format("uint3").encode(rng.standard_normal(7)),  # 21 bits
    }


def binomial_gof(counts, n, p):
    """Chi-square p-value of observed counts against Binomial(n, p), bins merged to E >= 5."""
    trials = len(counts)
    lo, hi = stats.binom.ppf(1e-4, n, p), stats.binom.ppf(1 - 1e-4, n, p)
    edges = [-0.5]
    k, acc = int(lo), 0.0
    while k <= hi:
        acc += stats.binom.pmf(k, n, p) * trials
        if acc >= 5:
            edges.append(k + 0.5)
            acc = 0.0
        k += 1
    edges[-1] = n + 0.5  # the last bin takes the upper tail
    edges = np.array(edges)
    obs = np.histogram(counts, edges)[0]
    exp = np.diff(stats.binom.cdf(edges, n, p)) * trials
    exp *= obs.sum() / exp.sum()
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("p,per", [(0.006, "bit"), (0.02, "bit"), (DENSE_RATE + 0.05, "bit"),
                                   (0.03, "value"), (0.5, "value")])
def test_fault_count_is_binomial(p, per):
    """Chi-square GOF of 600 trial counts vs Binomial(n_eligible, p). False alarm 1e-3."""
    inj = FaultInjector(make_targets(), FaultModel(p, per=per, exclude="d"))
    n = inj.n_bits if per == "bit" else inj.n_values
    rng = np.random.default_rng(1)
    counts = np.array([len(inj.sample(rng)) for _ in range(600)])
    assert binomial_gof(counts, n, p) > ALPHA


def test_extreme_rates_are_cheap_and_binomial():
    """n = 1e15 bits at p = 1e-12 (mean 1000) costs O(faults); z-test of the mean count
    over 100 seeds and of P(no fault) at n = 1e9. False alarm 2e-3 (two tests)."""
    rng = np.random.default_rng(2)
    counts = [len(bernoulli_positions(10**15, 1e-12, rng)) for _ in range(100)]
    z = (np.mean(counts) - 1000) / np.sqrt(1000 / 100)
    assert abs(z) < stats.norm.ppf(1 - ALPHA / 2)
    zeros = sum(len(bernoulli_positions(10**9, 1e-12, rng)) == 0 for _ in range(200))
    assert stats.binomtest(zeros, 200, np.exp(-1e-3)).pvalue > ALPHA
    assert len(bernoulli_positions(10**18, 1e-300, rng)) == 0


@pytest.mark.parametrize("p", [0.01, 0.4])
def test_positions_uniform_over_bits_tensors_values(p):
    """Pooled positions from 300 trials: chi-square over tensor (expected proportional to
    eligible bits), over fp32 bit index (32 cells) and over value index of tensor 'b'
    (100 cells). False alarm 3e-3 (three tests). Also checks no bit is hit twice."""
    targets = make_targets()
    inj = FaultInjector(targets, FaultModel(p))
    rng = np.random.default_rng(3)
    lists = [inj.sample(rng) for _ in range(300)]
    for fl in lists:
        key = (fl.tensor.astype(np.int64) << 40) | (fl.index << 5) | fl.bit
        assert len(np.unique(key)) == len(fl)
    tensor = np.concatenate([f.tensor for f in lists])
    bits = np.array([t.n_bits for t in targets.values()], float)
    obs = np.bincount(tensor, minlength=4)
    assert stats.chisquare(obs, bits / bits.sum() * obs.sum()).pvalue > ALPHA
    bit_a = np.concatenate([f.bit[f.tensor == 0] for f in lists])
    assert stats.chisquare(np.bincount(bit_a, minlength=32)).pvalue > ALPHA
    idx_b = np.concatenate([f.index[f.tensor == 1] for f in lists])
    assert stats.chisquare(np.bincount(idx_b, minlength=100)).pvalue > ALPHA


def test_per_value_bit_is_uniform_over_eligible_positions():
    """Per-value mode: chosen bit uniform over the 9 eligible fp32 positions
    (chi-square). False alarm 1e-3."""
    inj = FaultInjector(make_targets(), FaultModel(0.3, per="value", include="a",
                                                   bits="sign,0-7"))
    rng = np.random.default_rng(4)
    bits = np.concatenate([inj.sample(rng).bit for _ in range(200)])
    obs = np.bincount(bits, minlength=32)
    assert set(np.flatnonzero(obs)) <= {31, *range(8)}
    assert stats.chisquare(obs[[31, *range(8)]]).pvalue > ALPHA


def test_kind_mixture_fractions():
    """Stuck-at mixture with sa1_fraction 0.3 (exact binomial test) and mix (2, 1, 1)
    (chi-square over the 3 kinds). False alarm 2e-3 (two tests)."""
    rng = np.random.default_rng(5)
    t = make_targets()
    fl = FaultInjector(t, FaultModel(0.5, kind="stuck", sa1_fraction=0.3)).sample(rng)
    assert set(fl.kind.tolist()) == {SA0, SA1}
    assert stats.binomtest(int((fl.kind == SA1).sum()), len(fl), 0.3).pvalue > ALPHA
    fl = FaultInjector(t, FaultModel(0.5, kind="mix", mix=(2, 1, 1))).sample(rng)
    obs = np.bincount(fl.kind, minlength=3)
    assert stats.chisquare(obs, np.array([0.5, 0.25, 0.25]) * len(fl)).pvalue > ALPHA


def test_stuck_at_semantics_and_masking():
    """Deterministic: sa0 only clears bits, sa1 only sets bits, a flip changes exactly the
    targeted bit; masked iff the stuck value was already stored; undo restores."""
    t = make_targets()
    clean = {k: v.raw().copy() for k, v in t.items()}
    fl = inject_faults(t, FaultModel(0.3, kind="mix", mix=(1, 1, 1)), np.random.default_rng(6))
    old, new = fl.old.astype(np.uint64), fl.new.astype(np.uint64)
    stored_bit = (old >> fl.bit.astype(np.uint64)) & np.uint64(1)
    sa0, sa1, flip = fl.kind == SA0, fl.kind == SA1, fl.kind == 0
    assert not np.any(new[sa0] & ~old[sa0]) and not np.any(old[sa1] & ~new[sa1])
    np.testing.assert_array_equal(fl.masked[sa0], stored_bit[sa0] == 0)
    np.testing.assert_array_equal(fl.masked[sa1], stored_bit[sa1] == 1)
    assert not fl.masked[flip].any()
    vis = np.array([t[fl.names[i]].fmt.raw_mask for i in fl.tensor], np.uint64)
    np.testing.assert_array_equal((old ^ new)[flip] & vis[flip],
                                  np.uint64(1) << fl.bit[flip].astype(np.uint64))
    assert 0 < fl.n_masked < len(fl)
    undo_faults(t, fl)
    assert all(np.array_equal(t[k].raw(), clean[k]) for k in t)
