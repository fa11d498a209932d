"""Statistics of numharden.campaign.stats against scipy, closed forms and simulation."""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from naive_campaign import naive_interval, synthetic_expected
from numharden.campaign import CampaignConfig, SyntheticSpec
from numharden.campaign.plan import cell_trials
from numharden.campaign.stats import (betainc, betaincinv, clopper_pearson, mean_interval,
                                      normal_ppf, t_ppf, wilson)
from numharden.errors import ConfigError


def test_betainc_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(400):
        a, b = 10 ** rng.uniform(-1, 5, size=2)
        x = rng.uniform()
        ref = scipy.special.betainc(a, b, x)
        if ref > 1e-200:  # scipy loses accuracy deep in the underflow region
            assert betainc(a, b, x) == pytest.approx(ref, rel=1e-9, abs=1e-300)
    assert betainc(2.0, 3.0, 0.0) == 0.0 and betainc(2.0, 3.0, 1.0) == 1.0
    # closed form: I_x(1, b) = 1 - (1 - x)^b
    assert betainc(1.0, 7.5, 0.3) == pytest.approx(1 - 0.7 ** 7.5, rel=1e-14)


def test_betaincinv_inverts_betainc():
    rng = np.random.default_rng(1)
    for _ in range(200):
        a, b = 10 ** rng.uniform(-1, 4, size=2)
        p = rng.uniform(1e-6, 1 - 1e-6)
        x = betaincinv(a, b, p)
        assert x == pytest.approx(scipy.special.betaincinv(a, b, p), rel=1e-8, abs=1e-300)
    assert betaincinv(2.0, 2.0, 0.0) == 0.0 and betaincinv(2.0, 2.0, 1.0) == 1.0


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 19, 29, 30, 99, 999, 100000, 0.5, 2.5])
def test_t_ppf_matches_scipy(df):
    for p in [0.6, 0.75, 0.9, 0.95, 0.975, 0.995, 0.9995, 1 - 1e-9, 0.3, 0.025, 1e-6]:
        assert t_ppf(p, df) == pytest.approx(scipy.stats.t.ppf(p, df), rel=1e-9)


def test_t_ppf_closed_forms_near_median():
    # df = 1 (Cauchy): tan(pi (p - 1/2)); df = 2: (2p - 1) / sqrt(2 p (1 - p))
    for p in [0.5000001, 0.50001, 0.51, 0.7, 0.99]:
        assert t_ppf(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)
        assert t_ppf(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)),
                                            rel=1e-12)
    assert t_ppf(0.5, 7) == 0.0
    assert normal_ppf(0.975) == pytest.approx(scipy.stats.norm.ppf(0.975), rel=1e-13)


def test_proportion_intervals_match_scipy():
    """Clopper-Pearson against scipy's beta quantiles (binomtest's own root finder is
    only accurate to ~1e-9), Wilson against binomtest."""
    rng = np.random.default_rng(2)
    cases = [(0, 1), (1, 1), (0, 10), (10, 10), (3, 17), (0, 100000), (5, 100000)]
    cases += [(int(k), int(n)) for n in rng.integers(1, 5000, 30)
              for k in [rng.integers(0, n + 1)]]
    for k, n in cases:
        for conf in (0.95, 0.9):
            a = (1 - conf) / 2
            ref_lo = 0.0 if k == 0 else scipy.stats.beta.ppf(a, k, n - k + 1)
            ref_hi = 1.0 if k == n else scipy.stats.beta.ppf(1 - a, k + 1, n - k)
            lo, hi = clopper_pearson(k, n, conf)
            assert lo == pytest.approx(ref_lo, rel=1e-10, abs=1e-300)
            assert hi == pytest.approx(ref_hi, rel=1e-10)
            if k == 0:  # closed form of the zero-event upper limit
                assert hi == pytest.approx(1 - a ** (1 / n), rel=1e-12)
            res = scipy.stats.binomtest(k, n).proportion_ci(conf, "wilson")
            assert wilson(k, n, conf) == pytest.approx((res.low, res.high), rel=1e-12,
                                                       abs=1e-15)


@pytest.mark.parametrize("bad", [dict(k=3, n=2), dict(k=-1, n=5), dict(k=1, n=0),
                                 dict(k=1.5, n=4)])
def test_proportion_bad_counts(bad):
    with pytest.raises(ConfigError, match="0 <= k <= n"):
        wilson(**bad)
    with pytest.raises(ConfigError, match="0 <= k <= n"):
        clopper_pearson(**bad)


def test_special_function_errors():
    with pytest.raises(ConfigError, match="confidence"):
        wilson(1, 2, confidence=1.5)
    with pytest.raises(ConfigError, match="df > 0"):
        t_ppf(0.9, 0)
    with pytest.raises(ConfigError, match="0 < p < 1"):
        t_ppf(1.0, 3)
    with pytest.raises(ConfigError, match="a > 0"):
        betainc(-1.0, 1.0, 0.5)
    with pytest.raises(ConfigError, match="0 <= x <= 1"):
        betainc(1.0, 1.0, 1.5)
    with pytest.raises(ConfigError, match="at least one"):
        mean_interval([])
    with pytest.raises(ConfigError, match="within"):
        mean_interval([0.5, 1.2])
    with pytest.raises(ConfigError, match="within"):
        mean_interval([0.5, float("nan")])


def test_mean_interval_matches_naive_twin():
    rng = np.random.default_rng(3)
    for n in [1, 2, 3, 5, 30, 200]:
        for conf in (0.95, 0.8):
            vals = list(rng.beta(20, 3, size=n))
            iv = mean_interval(vals, conf)
            mean, lo, hi, half = naive_interval(vals, conf)
            assert (iv.mean, iv.lo, iv.hi, iv.half_width) == pytest.approx(
                (mean, lo, hi, half), rel=1e-10)
            assert iv.method == ("t" if n >= 2 else "bound") and iv.n == n


def test_zero_variance_bound_is_not_zero_width():
    iv = mean_interval([0.9] * 20)
    q = 1 - 0.025 ** (1 / 20)
    assert iv.method == "bound" and iv.mean == 0.9
    assert (iv.lo, iv.hi) == pytest.approx((0.9 - 0.9 * q, 0.9 + 0.1 * q), rel=1e-12)
    iv = mean_interval([0.0] * 100)  # e.g. SDC rate when no trial saw an SDC
    assert iv.lo == 0.0 and iv.hi == pytest.approx(1 - 0.025 ** 0.01) and iv.hi > 0.03
    iv = mean_interval([0.0, 1.0, 1.0])  # t interval is clipped to [0, 1]
    assert iv.lo >= 0.0 and iv.hi == 1.0 and iv.half_width > 0.5


def test_coverage_normal_data_small_samples():
    """Normal per-trial values, T = 5: the t interval is exact (95 %), the z interval
    would cover only ~87.8 %. 4000 simulated campaigns (seed 10): the coverage estimate
    has sd 0.0034, the tolerance 0.015 is 4.4 sd -> false-alarm rate about 1e-5."""
    rng = np.random.default_rng(10)
    data = rng.normal(0.8, 0.05, size=(4000, 5))
    hit = [mean_interval(row).lo <= 0.8 <= mean_interval(row).hi for row in data]
    assert abs(np.mean(hit) - 0.95) < 0.015


def _simulate(spec, ber, n_campaigns, trials, seed):
    runner = spec.build()
    seeds = np.random.default_rng(seed).integers(0, 2 ** 63, size=(n_campaigns, trials))
    return [[runner(ber, 0, int(s)) for s in row] for row in seeds]


def test_coverage_of_accuracy_and_sdc_intervals_on_synthetic_trials():
    """Skewed, correlated trials (SyntheticSpec, ~7 effective faults per trial, each
    hitting 2 % of the images): 1500 campaigns of 20 trials each (seed 11) against the
    closed-form means. Coverage estimate sd 0.0056; accepted band [0.925, 0.975]
    (4.5 sd around 0.95) -> false-alarm rate < 1e-4 if the true coverage is 0.95 (t is
    approximate here). Treating images as independent (Wilson on pooled counts) must
    under-cover badly: that is why the trial is the unit."""
    spec = SyntheticSpec(n_images=500, n_bits=10_000, base_acc=0.9, mask_prob=0.3,
                         hit_prob=0.02)
    ber = 1e-3
    exp = synthetic_expected(spec, ber)
    camps = _simulate(spec, ber, 1500, 20, 11)
    cover_acc = cover_sdc = cover_img = 0
    for trials in camps:
        acc = mean_interval([r["correct"] / r["n_images"] for r in trials])
        sdc = mean_interval([r["sdc"] / r["n_images"] for r in trials])
        cover_acc += acc.lo <= exp["acc"] <= acc.hi
        cover_sdc += sdc.lo <= exp["sdc"] <= sdc.hi
        lo, hi = wilson(sum(r["sdc"] for r in trials), sum(r["n_images"] for r in trials))
        cover_img += lo <= exp["sdc"] <= hi
    assert 0.925 <= cover_acc / 1500 <= 0.975
    assert 0.925 <= cover_sdc / 1500 <= 0.975
    assert cover_img / 1500 < 0.6


def test_synthetic_means_match_closed_forms():
    """Sanity of the simulation model itself: 4000 trials, means within 5 standard
    errors of the closed forms (false-alarm rate ~1e-6 per quantity)."""
    spec = SyntheticSpec(n_images=200, n_bits=5000, mask_prob=0.25, hit_prob=0.05,
                         nan_prob=0.01, group_scale=(("conv1", 3.0),))
    for group in (None, "conv1"):
        exp = synthetic_expected(spec, 2e-4, group)
        runner = spec.build()
        res = [runner(2e-4, t, t, group=group) for t in range(4000)]
        for name, vals in [("acc", [r["correct"] / 200 for r in res]),
                           ("sdc", [r["sdc"] / 200 for r in res]),
                           ("nonfinite", [r["nonfinite"] / 200 for r in res]),
                           ("faults", [r["n_faults"] for r in res]),
                           ("masked", [r["n_masked"] for r in res])]:
            se = np.std(vals) / math.sqrt(len(vals))
            assert abs(np.mean(vals) - exp[name]) < 5 * se + 1e-12, name


def test_coverage_with_adaptive_stopping():
    """Sequential stopping (min 10 trials, rounds of 10, stop at half-width <= 0.004,
    cap 200) on the synthetic distribution: 400 campaigns (seed 12). Optional stopping
    may cost a little coverage; we require >= 0.90 (binomial sd 0.011 at 0.95: a
    false alarm needs a 4.5 sd deficit)."""
    spec = SyntheticSpec(n_images=500, n_bits=10_000, hit_prob=0.01)
    ber = 5e-4
    exp = synthetic_expected(spec, ber)["acc"]
    cfg = CampaignConfig(bers=[ber], trials=10, ci_width=0.004, max_trials=200,
                         round_size=10)
    runner = spec.build()
    rng = np.random.default_rng(12)
    covered, sizes = 0, []
    for _ in range(400):
        recs = {}
        base = int(rng.integers(0, 2 ** 62))
        while True:
            n, complete = cell_trials(cfg, ber, recs)
            if complete:
                break
            for t in range(len(recs), n):
                recs[t] = runner(ber, t, base + t)
        iv = mean_interval([recs[t]["correct"] / 500 for t in range(n)])
        covered += iv.lo <= exp <= iv.hi
        sizes.append(n)
        assert iv.half_width <= 0.004 or n == 200
    assert covered / 400 >= 0.90
    assert min(sizes) < max(sizes)  # the rule really adapts
