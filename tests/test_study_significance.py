"""Paired tests of numharden.study.significance against exact enumerations, hand-computed
cases and SciPy (a test-only dependency)."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from numharden.errors import ConfigError
from numharden.study.significance import (bootstrap, holm, normal_cdf, paired_t, t_cdf,
                                          verdict, wilcoxon)


def test_t_cdf_and_normal_cdf_match_scipy():
    for df in (1, 2.5, 7, 40, 500):
        for t in (-30.0, -2.0, -0.3, 0.0, 0.7, 3.1):
            assert t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), rel=1e-10, abs=1e-14)
    for z in (-8.0, -1.96, 0.0, 0.5, 3.0):
        assert normal_cdf(z) == pytest.approx(stats.norm.cdf(z), rel=1e-12, abs=1e-300)


def test_paired_t_matches_scipy_and_closed_form():
    rng = np.random.default_rng(0)
    for n in (2, 5, 30, 300):
        d = rng.normal(0.2, 1.0, size=n)
        r = paired_t(d)
        ref = stats.ttest_1samp(d, 0.0)
        ci = ref.confidence_interval(0.95)
        assert r.method == "t" and r.n == n
        assert r.p == pytest.approx(ref.pvalue, rel=1e-9)
        assert (r.lo, r.hi) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    # closed form: d = (1, 3): mean 2, sd sqrt(2), t = 2 / 1 = 2, df 1, p = 2 * (1/2 - atan(2)/pi)
    r = paired_t([1.0, 3.0])
    assert r.statistic == pytest.approx(2.0)
    assert r.p == pytest.approx(1.0 - 2.0 * math.atan(2.0) / math.pi, rel=1e-12)


def test_degenerate_differences_are_reported_not_tested():
    assert paired_t([0.0, 0.0, 0.0]).method == "degenerate"
    assert paired_t([0.0, 0.0]).p == 1.0
    r = wilcoxon([0.01] * 5)
    assert r.method == "degenerate" and r.p == 0.0 and r.lo == r.hi == 0.01
    assert bootstrap([0.5]).method == "degenerate"


def _exact_signed_rank_p(d):
    """Two-sided p-value by enumerating all 2^n sign patterns (no ties, no zeros)."""
    a = np.abs(d)
    ranks = stats.rankdata(a)
    w_obs = ranks[d > 0].sum()
    total = ranks.sum()
    stat = min(w_obs, total - w_obs)
    ws = [sum(r for r, s in zip(ranks, signs) if s)
          for signs in itertools.product((0, 1), repeat=len(d))]
    ws = np.array(ws)
    return min(1.0, 2.0 * np.mean(ws <= stat))


def test_wilcoxon_exact_equals_enumeration():
    rng = np.random.default_rng(3)
    for n in (2, 3, 6, 11):
        d = rng.normal(0.3, 1.0, size=n)
        r = wilcoxon(d)
        assert r.method == "wilcoxon-exact"
        assert r.p == pytest.approx(_exact_signed_rank_p(d), rel=1e-12)
    # hand case: d = (1, -2, 3): W+ = 1 + 3 = 4, W- = 2, stat 2; P(W+ <= 2) = #{}, {1}, {2} / 8 = 3/8, two-sided 0.75
    assert wilcoxon([1.0, -2.0, 3.0]).p == pytest.approx(0.75)


def test_wilcoxon_matches_scipy_with_zeros_ties_and_large_n():
    rng = np.random.default_rng(4)
    cases = [rng.standard_t(3, size=49), rng.standard_t(3, size=120),
             np.round(rng.normal(0.01, 0.02, size=100), 2)]      # ties and zeros
    for d in cases:
        r = wilcoxon(d)
        ref = stats.wilcoxon(d, zero_method="wilcox", correction=False)
        assert r.p == pytest.approx(ref.pvalue, rel=1e-9)
        assert r.statistic == pytest.approx(ref.statistic)
    # zeros dropped, the 15 others untied: exact (SciPy falls back to the normal here)
    d = np.r_[np.zeros(30), rng.normal(0.5, 1, size=15)]
    r = wilcoxon(d)
    assert r.method == "wilcoxon-exact" and r.n == 15
    assert r.p == pytest.approx(_exact_signed_rank_p(d[d != 0]), rel=1e-12)


def _signed_rank_rejects(d, alpha):
    return stats.wilcoxon(d, method="exact").pvalue < alpha


def test_hodges_lehmann_interval_inverts_the_test():
    """The interval is the set of shifts the exact test does not reject."""
    rng = np.random.default_rng(5)
    d = rng.normal(1.0, 1.0, size=12)
    r = wilcoxon(d, confidence=0.9)
    i, j = np.triu_indices(d.size)
    assert r.estimate == pytest.approx(np.median(0.5 * (d[i] + d[j])))
    eps = 1e-9
    assert not _signed_rank_rejects(d - (r.lo + eps), 0.1)
    assert not _signed_rank_rejects(d - (r.hi - eps), 0.1)
    assert _signed_rank_rejects(d - (r.lo - 1e-3), 0.1)
    assert _signed_rank_rejects(d - (r.hi + 1e-3), 0.1)


def test_bootstrap_bca_agrees_with_scipy_and_is_seeded():
    rng = np.random.default_rng(6)
    d = rng.exponential(1.0, size=40) - 0.8
    r = bootstrap(d, resamples=20000, seed=1)
    ref = stats.bootstrap((d,), np.mean, method="BCa", n_resamples=20000,
                          random_state=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert abs(r.lo - ref.low) < 0.05 * width and abs(r.hi - ref.high) < 0.05 * width
    assert r == bootstrap(d, resamples=20000, seed=1)
    assert r.estimate == pytest.approx(d.mean())
    with pytest.raises(ConfigError, match="resamples"):
        bootstrap(d, resamples=10)


def test_bootstrap_coverage():
    """95 % BCa intervals for the mean of a skewed variable cover it in 90-99 % of 200
    replications (binomial false-alarm rate of this band < 0.01 at true coverage 0.93-0.96)."""
    rng = np.random.default_rng(7)
    cover = 0
    for k in range(200):
        d = rng.exponential(1.0, size=30)
        r = bootstrap(d, resamples=2000, seed=k)
        cover += r.lo <= 1.0 <= r.hi
    assert 180 <= cover <= 198


def test_holm_hand_case_and_bounds():
    adj = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]
    assert holm([]).size == 0
    with pytest.raises(ConfigError):
        holm([0.2, 1.5])


def test_holm_controls_family_wise_error():
    """Under the global null with 10 independent tests, P(any rejection at 0.05) <= 0.05;
    with 4000 families the observed rate exceeds 0.062 with probability < 0.001."""
    rng = np.random.default_rng(8)
    p = rng.uniform(size=(4000, 10))
    rate = np.mean([np.any(holm(row) < 0.05) for row in p])
    assert rate < 0.062
    # and it is not a do-nothing correction: a strong signal survives
    assert holm([1e-6] + [0.5] * 9)[0] < 0.05


def test_verdict_rule():
    assert verdict([0.1, 0.2, 0.3, 0.1], [0.01, 0.02, 0.2, 0.04], +1) == "holds"
    assert verdict([0.1, 0.2, 0.3, 0.1], [0.01, 0.2, 0.2, 0.4], +1) == "partly"
    assert verdict([0.1, -0.2, 0.3, 0.1], [0.01, 0.01, 0.01, 0.4], +1) == "partly"
    assert verdict([0.1, 0.2], [0.3, 0.2], +1) == "does not hold"
    assert verdict([-0.1, -0.2], [0.01, 0.01], +1) == "does not hold"
    assert verdict([-0.1, -0.2], [0.01, 0.01], -1) == "holds"
    with pytest.raises(ConfigError):
        verdict([0.1], [0.1, 0.2], 1)
    with pytest.raises(ConfigError):
        verdict([0.1], [0.1], 0)


def test_bad_input_is_one_clear_error():
    with pytest.raises(ConfigError, match="NaN"):
        paired_t([0.1, float("nan")])
    with pytest.raises(ConfigError, match="at least one"):
        wilcoxon([])
