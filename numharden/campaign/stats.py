"""Confidence intervals for fault campaigns, with no SciPy at run time.

Special functions
-----------------
:func:`betainc` (regularized incomplete beta, continued fraction) and its inverse
:func:`betaincinv` (Newton's method safeguarded by bisection) give the Student-t
quantile :func:`t_ppf` and the beta quantiles behind :func:`clopper_pearson`. Tests check
them against ``scipy.special`` / ``scipy.stats`` to ~1e-10 relative.

Which interval, and why
-----------------------
The unit of a campaign is the **trial**: one draw of faults followed by one pass over
the test set. All images of a trial share its faults, so their outcomes are strongly
correlated (one flipped exponent bit can break every image at once). Treating the
``n_trials * n_images`` image outcomes as independent Bernoulli draws (Wilson or
Clopper-Pearson on pooled counts) therefore gives intervals far too narrow; the
coverage test in ``tests/test_stats.py`` shows it. :func:`mean_interval` instead treats
the per-trial rates (accuracy, SDC rate, NaN/Inf rate) as i.i.d. draws of a bounded
variable and uses

* the Student-t interval ``mean +- t_{1-alpha/2, T-1} s / sqrt(T)`` when there are at
  least two trials whose values are not all equal, clipped to the variable's bounds;
* otherwise (one trial, or all trials equal -- typical at low BER where most trials
  draw no fault) a distribution-free bound: the probability ``q`` that a trial differs
  from the observed common value ``m`` is at most the Clopper-Pearson upper limit for
  0 events in T trials, ``1 - (alpha/2)**(1/T)``, and a differing trial lies within the
  bounds ``[lo, hi]``, so the mean lies in ``[m - q (m - lo), m + q (hi - m)]``. A
  zero-width interval would claim certainty the data cannot give.

The t interval assumes the trial mean is near normal. It does not see what a campaign
has not sampled: if 1.4 % of trials make every output NaN (a flipped float exponent),
a 100-trial campaign sees none of them a quarter of the time, and its accuracy interval
then misses the true mean (simulated coverage ~0.84 instead of 0.95). No interval that
is valid for every bounded distribution avoids this without being roughly ``4/T`` wide,
so numharden keeps the t interval the issue asks for and reports the NaN/Inf rate
with its own interval: when no NaN/Inf trial was seen, that interval is the
distribution-free bound ``[0, 1 - (alpha/2)**(1/T)]``, which shows how large an unseen
catastrophic rate could still be. The coverage tests in ``tests/test_stats.py`` state
the distributions and tolerances used.

:func:`wilson` and :func:`clopper_pearson` are provided for genuinely independent
Bernoulli counts (e.g. the fraction of trials with any SDC, or a fault-free evaluation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ConfigError

__all__ = ["betainc", "betaincinv", "t_ppf", "normal_ppf", "wilson", "clopper_pearson",
           "Interval", "mean_interval"]

_EPS = 1e-16
_TINY = 1e-300


def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence level {confidence!r} must lie strictly between 0 "
                          f"and 1, e.g. 0.95")
    return confidence


def _stirling_corr(x: float) -> float:
    """``lgamma(x) - [(x - 1/2) log x - x + log(2 pi)/2]`` for x >= 10 (error < 1e-17)."""
    x2 = 1.0 / (x * x)
    return (1.0 / 12.0 - x2 * (1.0 / 360.0 - x2 * (1.0 / 1260.0 - x2 / 1680.0))) / x


def _lbeta(a: float, b: float) -> float:
    """``log B(a, b)``, avoiding the cancellation of lgamma(a) - lgamma(a+b) for large a."""
    if a < b:
        a, b = b, a
    if a < 10.0:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    # lgamma(a) - lgamma(a+b) by Stirling, written with log1p so nothing cancels.
    diff = (-(a - 0.5) * math.log1p(b / a) - b * math.log(a + b) + b
            + _stirling_corr(a) - _stirling_corr(a + b))
    return math.lgamma(b) + diff


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta (modified Lentz), x < (a+1)/(a+b+2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 3e-16:
            return h
    raise AssertionError(f"betainc continued fraction did not converge (a={a}, b={b}, x={x})")


def _log_front(a: float, b: float, x: float) -> float:
    """``log(x^a (1-x)^b / B(a, b))``; for large a, b written around the mode x0 = a/(a+b)
    with log1p and Stirling so the huge terms cancel analytically, not numerically."""
    if a < 10.0 or b < 10.0:
        return a * math.log(x) + b * math.log1p(-x) - _lbeta(a, b)
    c = a + b
    x0, y0 = a / c, b / c
    d = x - x0
    return (a * math.log1p(d / x0) + b * math.log1p(-d / y0)
            + 0.5 * (math.log(a) + math.log(b) - math.log(c) - math.log(2.0 * math.pi))
            - _stirling_corr(a) - _stirling_corr(b) + _stirling_corr(c))


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function ``I_x(a, b)`` for ``a, b > 0``, ``0 <= x <= 1``."""
    a, b, x = float(a), float(b), float(x)
    if not (a > 0 and b > 0):
        raise ConfigError(f"betainc needs a > 0 and b > 0, got a={a!r}, b={b!r}")
    if not 0.0 <= x <= 1.0:
        raise ConfigError(f"betainc needs 0 <= x <= 1, got x={x!r}")
    if x == 0.0 or x == 1.0:
        return float(x)
    log_front = _log_front(a, b, x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def betaincinv(a: float, b: float, p: float) -> float:
    """Inverse of :func:`betainc` in ``x``: the ``x`` with ``I_x(a, b) = p``."""
    a, b, p = float(a), float(b), float(p)
    if not (a > 0 and b > 0):
        raise ConfigError(f"betaincinv needs a > 0 and b > 0, got a={a!r}, b={b!r}")
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"betaincinv needs 0 <= p <= 1, got p={p!r}")
    if p == 0.0 or p == 1.0:
        return float(p)
    lo, hi = 0.0, 1.0
    x = a / (a + b)
    lb = _lbeta(a, b)
    for _ in range(400):
        f = betainc(a, b, x) - p
        if f == 0.0:
            return x
        if f < 0.0:
            lo = x
        else:
            hi = x
        # Newton step on I_x(a, b) with the beta density as derivative.
        logpdf = (a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x) - lb
        pdf = math.exp(logpdf) if logpdf < 700.0 else math.inf
        x_new = x - f / pdf if pdf > 0.0 else math.nan
        if not lo < x_new < hi:  # outside the bracket: bisect, geometrically if wide
            x_new = math.sqrt(lo * hi) if lo > 0.0 and hi > 4.0 * lo else 0.5 * (lo + hi)
        if abs(x_new - x) <= 2.0 * _EPS * x_new or hi - lo <= 2.0 * _EPS * hi:
            return x_new
        x = x_new
    return x


@lru_cache(maxsize=4096)
def t_ppf(p: float, df: float) -> float:
    """Quantile of Student's t distribution with ``df > 0`` degrees of freedom.

    Uses ``P(|T| > t) = I_{df/(df+t^2)}(df/2, 1/2)``.
    """
    p, df = float(p), float(df)
    if not 0.0 < p < 1.0:
        raise ConfigError(f"t_ppf needs 0 < p < 1, got p={p!r}")
    if not df > 0.0:
        raise ConfigError(f"t_ppf needs df > 0 degrees of freedom, got df={df!r}")
    if p == 0.5:
        return 0.0
    tail = 2.0 * min(p, 1.0 - p)  # P(|T| > t) = I_x(df/2, 1/2), x = df / (df + t^2)
    if tail < 0.5:
        x = betaincinv(0.5 * df, 0.5, tail)
        t = math.sqrt(df * (1.0 - x) / x) if x > 0.0 else math.inf
    else:  # near the median solve for y = 1 - x = t^2 / (df + t^2) to keep precision
        y = betaincinv(0.5, 0.5 * df, abs(2.0 * p - 1.0))
        t = math.sqrt(df * y / (1.0 - y))
    return t if p > 0.5 else -t


def normal_ppf(p: float) -> float:
    """Standard normal quantile (the t quantile's limit), by bisection on ``erfc``."""
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ConfigError(f"normal_ppf needs 0 < p < 1, got p={p!r}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


def _check_counts(k, n) -> tuple[int, int]:
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n \
            or not 0 <= k <= n or n < 1:
        raise ConfigError(f"a proportion needs integer counts 0 <= k <= n, n >= 1; "
                          f"got k={k!r}, n={n!r}")
    return int(k), int(n)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` independent Bernoulli trials."""
    k, n = _check_counts(k, n)
    z = normal_ppf(0.5 + 0.5 * _check_confidence(confidence))
    phat = k / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for ``k`` successes in ``n`` Bernoulli trials."""
    k, n = _check_counts(k, n)
    alpha = 1.0 - _check_confidence(confidence)
    lo = 0.0 if k == 0 else betaincinv(k, n - k + 1, alpha / 2)
    hi = 1.0 if k == n else betaincinv(k + 1, n - k, 1 - alpha / 2)
    return lo, hi


@dataclass(frozen=True)
class Interval:
    """Mean of per-trial values with its confidence interval.

    Attributes
    ----------
    mean, lo, hi : float
        Sample mean and interval bounds (clipped to the variable's range).
    half_width : float
        Unclipped half-width; the adaptive stopping rule compares it with ``ci_width``.
    n : int
        Number of trials.
    method : str
        ``'t'`` (Student t) or ``'bound'`` (distribution-free, see module docstring).
    """

    mean: float
    lo: float
    hi: float
    half_width: float
    n: int
    method: str


def mean_interval(values, confidence: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)
                  ) -> Interval:
    """Confidence interval for the mean of i.i.d. per-trial values in ``bounds``.

    Parameters
    ----------
    values : array_like, shape (T,), float
        One value per trial (e.g. the trial's accuracy), T >= 1.
    confidence : float
        Two-sided confidence level.
    bounds : (float, float)
        Range every value can take; used for clipping and for the distribution-free bound.

    Returns
    -------
    Interval
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    alpha = 1.0 - _check_confidence(confidence)
    lo_b, hi_b = float(bounds[0]), float(bounds[1])
    if v.size == 0:
        raise ConfigError("mean_interval needs at least one trial value, got none")
    if not np.all(np.isfinite(v)) or v.min() < lo_b or v.max() > hi_b:
        raise ConfigError(f"mean_interval values must be finite and within {bounds}; "
                          f"found range [{v.min()}, {v.max()}]")
    n = int(v.size)
    mean = math.fsum(v.tolist()) / n
    if n >= 2 and not np.all(v == v[0]):
        sd = math.sqrt(math.fsum(((v - mean) ** 2).tolist()) / (n - 1))
        half = t_ppf(1.0 - alpha / 2.0, n - 1) * sd / math.sqrt(n)
        return Interval(mean, max(lo_b, mean - half), min(hi_b, mean + half), half, n, "t")
    mean = float(v[0])  # all equal: the exact common value
    q = 1.0 - (alpha / 2.0) ** (1.0 / n)
    lo, hi = mean - q * (mean - lo_b), mean + q * (hi_b - mean)
    return Interval(mean, lo, hi, max(mean - lo, hi - mean), n, "bound")
