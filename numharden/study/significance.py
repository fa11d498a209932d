"""Paired comparisons for reproduction studies, with no SciPy at run time.

A study compares two models (or a model with and without a protection) on the *same*
fault draws: trial ``i`` of both campaigns uses the same seed, so the per-trial
differences ``d_i = acc_A,i - acc_B,i`` are paired. This module turns such differences
into estimates, intervals, p-values and verdicts:

* :func:`paired_t` -- Student-t interval and two-sided p-value for the mean difference.
  Used at two levels: over trials (``d_i`` per trial) and over training seeds (one mean
  paired difference per seed: the *seed-level* interval, which is what a claim about a
  training method must rest on, because trials of one trained model share its seed).
* :func:`wilcoxon` -- Wilcoxon signed-rank test (exact null distribution for up to 50
  non-zero differences without ties, otherwise the normal approximation with tie
  correction), with the Hodges-Lehmann estimate of the location shift and its
  distribution-free interval from the Walsh averages. Per-trial differences are
  heavy-tailed (most trials change nothing, a few change a lot), where the t interval
  is least trustworthy.
* :func:`bootstrap` -- BCa bootstrap interval for the mean difference (seeded).
* :func:`holm` -- Holm-Bonferroni step-down adjustment of p-values over the cells
  (fault type x rate) of one claim; controls the family-wise error rate at ``alpha``
  under any dependence between cells.
* :func:`verdict` -- the written-down rule that turns the adjusted cell results of a
  claim into "holds", "partly" or "does not hold".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..campaign.stats import _check_confidence, betainc, normal_ppf, t_ppf
from ..errors import ConfigError

__all__ = ["PairedTest", "t_cdf", "normal_cdf", "paired_t", "wilcoxon", "bootstrap",
           "holm", "verdict", "VERDICT_RULE"]

# Largest count of non-zero differences for which the exact signed-rank null
# distribution is used (no ties); counts up to 2**50 are exact in float64.
_EXACT_MAX = 50


@dataclass(frozen=True)
class PairedTest:
    """Estimate, two-sided interval and p-value of one paired comparison.

    Attributes
    ----------
    estimate : float
        Mean difference (t, bootstrap) or Hodges-Lehmann shift (Wilcoxon).
    lo, hi : float
        Two-sided confidence interval for ``estimate``'s target.
    p : float
        Two-sided p-value for "no difference".
    n : int
        Differences used (Wilcoxon: non-zero ones).
    method : str
        ``'t'``, ``'wilcoxon-exact'``, ``'wilcoxon-normal'``, ``'bootstrap-bca'`` or
        ``'degenerate'`` (all differences equal: no variation to test).
    statistic : float
        t statistic, ``min(W+, W-)``, or the number of bootstrap resamples.
    """

    estimate: float
    lo: float
    hi: float
    p: float
    n: int
    method: str
    statistic: float

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "lo": self.lo, "hi": self.hi, "p": self.p,
                "n": self.n, "method": self.method, "statistic": self.statistic}


def _diffs(d, name: str = "differences") -> np.ndarray:
    v = np.asarray(d, dtype=np.float64).ravel()
    if v.size == 0:
        raise ConfigError(f"{name}: need at least one paired difference, got none")
    if not np.all(np.isfinite(v)):
        raise ConfigError(f"{name}: paired differences must be finite; found "
                          f"{int((~np.isfinite(v)).sum())} NaN/Inf of {v.size}")
    return v


def t_cdf(t: float, df: float) -> float:
    """Student-t cumulative distribution function (via the incomplete beta)."""
    if df <= 0:
        raise ConfigError(f"t_cdf: degrees of freedom must be > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def normal_cdf(z: float) -> float:
    """Standard normal cumulative distribution function."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _degenerate(v: np.ndarray) -> PairedTest:
    m = float(v[0])
    return PairedTest(m, m, m, 1.0 if m == 0.0 else 0.0, int(v.size), "degenerate", math.nan)


def paired_t(d, confidence: float = 0.95) -> PairedTest:
    """Student-t test and interval for the mean of paired differences.

    Parameters
    ----------
    d : array_like, shape (n,), float
        Paired differences (per trial, or per training seed for the seed-level test).
    confidence : float
        Two-sided confidence level of the interval.

    Returns
    -------
    PairedTest
        With ``n < 2`` or all differences equal there is nothing to estimate a spread
        from: method ``'degenerate'``, a zero-width interval and p = 1 if the common
        difference is 0, else 0 (callers should report such cells, not test them).
    """
    v = _diffs(d)
    alpha = 1.0 - _check_confidence(confidence)
    n = int(v.size)
    if n < 2 or np.all(v == v[0]):
        return _degenerate(v)
    mean = math.fsum(v.tolist()) / n
    sd = math.sqrt(math.fsum(((v - mean) ** 2).tolist()) / (n - 1))
    se = sd / math.sqrt(n)
    t = mean / se
    half = t_ppf(1.0 - alpha / 2.0, n - 1) * se
    p = min(1.0, 2.0 * t_cdf(-abs(t), n - 1))
    return PairedTest(mean, mean - half, mean + half, p, n, "t", t)


def _ranks(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) of ``a`` and the sizes of its tie groups."""
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    ranks = np.empty(a.size, dtype=np.float64)
    ties = []
    i = 0
    while i < s.size:
        j = i
        while j + 1 < s.size and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, np.asarray(ties, dtype=np.float64)


def _signed_rank_counts(n: int) -> np.ndarray:
    """Number of sign patterns of ranks 1..n with each W+ = 0 .. n(n+1)/2."""
    top = n * (n + 1) // 2
    c = np.zeros(top + 1, dtype=np.float64)
    c[0] = 1.0
    for k in range(1, n + 1):
        c[k:] = c[k:] + c[:-k].copy()
    return c


def _lower_critical(n: int, alpha: float) -> int:
    """Largest c with P(W+ <= c) <= alpha/2 under the null for n differences (exact for
    n <= 50, normal approximation above; -1 when even c = 0 is too likely)."""
    if n <= _EXACT_MAX:
        cdf = np.cumsum(_signed_rank_counts(n)) / 2.0 ** n
        return int(np.searchsorted(cdf, alpha / 2.0, side="right")) - 1
    mean = n * (n + 1) / 4.0
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
    return int(math.floor(mean - normal_ppf(1.0 - alpha / 2.0) * sd))


def _walsh_interval(v: np.ndarray, k: int) -> tuple[float, float, float]:
    """Hodges-Lehmann shift and the interval between the k-th smallest and largest Walsh
    averages ``(v_i + v_j) / 2, i <= j``."""
    i, j = np.triu_indices(v.size)
    w = np.sort(0.5 * (v[i] + v[j]))
    hl = float(np.median(w))
    k = min(max(k, 1), w.size)
    return hl, float(w[k - 1]), float(w[w.size - k])


def wilcoxon(d, confidence: float = 0.95) -> PairedTest:
    """Wilcoxon signed-rank test of paired differences against a zero shift.

    Zero differences are dropped (Wilcoxon's convention, scipy's ``zero_method='wilcox'``),
    tied absolute values get average ranks. For ``n <= 50`` non-zero differences without
    ties the p-value comes from the exact null distribution of ``W+`` (all ``2**n`` sign
    patterns equally likely); otherwise from the normal approximation with mean
    ``n(n+1)/4`` and variance ``n(n+1)(2n+1)/24 - sum(t^3 - t)/48`` over tie groups of
    size t, without continuity correction. The estimate is the Hodges-Lehmann shift
    (median of the Walsh averages of all differences, zeros included) and the interval
    is the set of shifts the signed-rank test on all ``N`` differences does not reject:
    from the (c+1)-th smallest to the (c+1)-th largest Walsh average, c the largest value
    with ``P(W+ <= c) <= alpha/2`` for ``N`` (exact for N <= 50, else normal).

    Parameters
    ----------
    d : array_like, shape (n,), float
    confidence : float

    Returns
    -------
    PairedTest
    """
    v_all = _diffs(d)
    alpha = 1.0 - _check_confidence(confidence)
    v = v_all[v_all != 0.0]
    n = int(v.size)
    if n == 0 or np.all(v_all == v_all[0]):
        return _degenerate(v_all)
    ranks, ties = _ranks(np.abs(v))
    w_plus = float(ranks[v > 0].sum())
    total = n * (n + 1) / 2.0
    stat = min(w_plus, total - w_plus)
    if n <= _EXACT_MAX and ties.size == 0:
        cdf = np.cumsum(_signed_rank_counts(n)) / 2.0 ** n
        p = min(1.0, 2.0 * float(cdf[int(round(stat))]))
        method = "wilcoxon-exact"
    else:
        mean = total / 2.0
        var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(ties ** 3 - ties)) / 48.0
        z = (stat - mean) / math.sqrt(var)
        p = min(1.0, 2.0 * normal_cdf(z))
        method = "wilcoxon-normal"
    hl, lo, hi = _walsh_interval(v_all, _lower_critical(v_all.size, alpha) + 1)
    return PairedTest(hl, lo, hi, p, n, method, stat)


def bootstrap(d, confidence: float = 0.95, *, resamples: int = 10000,
              seed: int = 0) -> PairedTest:
    """BCa bootstrap interval for the mean of paired differences.

    ``resamples`` resamples of the differences with replacement (a
    ``numpy.random.Generator`` seeded with ``seed``) give the bootstrap distribution of the
    mean; the bias-corrected and accelerated percentiles (Efron 1987; acceleration from
    the jackknife) give the interval. The p-value is that of the percentile-interval
    inversion, ``2 min(P*(mean* <= 0), P*(mean* >= 0))``, with a floor of
    ``1 / (resamples + 1)`` -- a resampling p-value cannot be smaller.
    """
    v = _diffs(d)
    alpha = 1.0 - _check_confidence(confidence)
    if int(resamples) < 100:
        raise ConfigError(f"bootstrap resamples must be >= 100, got {resamples}")
    n = int(v.size)
    if n < 2 or np.all(v == v[0]):
        return _degenerate(v)
    rng = np.random.default_rng(seed)
    means = np.empty(int(resamples))
    chunk = max(1, 2_000_000 // n)
    for s in range(0, means.size, chunk):
        e = min(means.size, s + chunk)
        means[s:e] = v[rng.integers(0, n, size=(e - s, n))].mean(axis=1)
    mean = float(v.mean())
    below = float(np.mean(means < mean)) + 0.5 * float(np.mean(means == mean))
    z0 = normal_ppf(min(max(below, 1e-12), 1 - 1e-12))
    jack = (v.sum() - v) / (n - 1)
    dj = jack.mean() - jack
    den = 6.0 * float(np.sum(dj ** 2)) ** 1.5
    acc = float(np.sum(dj ** 3)) / den if den > 0 else 0.0

    def pct(q):
        z = normal_ppf(q)
        return normal_cdf(z0 + (z0 + z) / (1.0 - acc * (z0 + z)))

    lo, hi = np.quantile(means, [pct(alpha / 2.0), pct(1.0 - alpha / 2.0)])
    tail = min(float(np.mean(means <= 0.0)), float(np.mean(means >= 0.0)))
    p = min(1.0, max(2.0 * tail, 1.0 / (means.size + 1)))
    return PairedTest(mean, float(lo), float(hi), p, n, "bootstrap-bca", float(means.size))


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the order given.

    With p-values sorted ascending ``p_(1) <= ... <= p_(m)``, the adjusted value of the
    j-th is ``max_{i <= j} min(1, (m - i + 1) p_(i))``. Rejecting every hypothesis whose
    adjusted p-value is below ``alpha`` controls the family-wise error rate at ``alpha``.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1):
        raise ConfigError(f"holm: p-values must lie in [0, 1]; found {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="mergesort")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj_sorted
    return out


VERDICT_RULE = (
    "A claim is judged over its cells (fault type x rate), at the training-seed level: "
    "one paired difference per seed, tested with the paired t test, p-values Holm-adjusted "
    "over the claim's cells. 'holds' = adjusted p < alpha in the claimed direction in at "
    "least half of the cells and in no cell against it; 'does not hold' = no cell "
    "significant in the claimed direction, or at least half significant against it; "
    "'partly' = anything else.")


def verdict(estimates, adjusted_p, direction: int, alpha: float = 0.05) -> str:
    """Apply :data:`VERDICT_RULE` to the cells of one claim.

    Parameters
    ----------
    estimates : array_like, shape (m,)
        Paired difference per cell (claimed better minus baseline, in the unit compared).
    adjusted_p : array_like, shape (m,)
        Holm-adjusted p-values of the cells (:func:`holm`).
    direction : int
        +1 if the claim says the difference is positive, -1 if negative.
    alpha : float
        Family-wise significance level.
    """
    est = np.asarray(estimates, dtype=np.float64).ravel()
    p = np.asarray(adjusted_p, dtype=np.float64).ravel()
    if est.shape != p.shape or est.size == 0:
        raise ConfigError(f"verdict needs one estimate per adjusted p-value and at least one "
                          f"cell; got {est.size} estimates, {p.size} p-values")
    if direction not in (1, -1):
        raise ConfigError(f"verdict direction must be +1 or -1, got {direction!r}")
    sig = p < alpha
    pro = int(np.sum(sig & (np.sign(est) == direction)))
    con = int(np.sum(sig & (np.sign(est) == -direction)))
    m = est.size
    if pro == 0 or 2 * con >= m:
        return "does not hold"
    if 2 * pro >= m and con == 0:
        return "holds"
    return "partly"
