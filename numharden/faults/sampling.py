"""Sampling which of n items fail, each independently with probability p, in O(failures).

The failing set of an i.i.d. Bernoulli(p) process over n items has a Binomial(n, p) size
and, given its size, is a uniform subset drawn *without replacement*: exactly the fault
model. Two exact paths produce it, both returning sorted positions:

* sparse (p < ``DENSE_RATE``): geometric skipping - the gaps between consecutive failures
  are i.i.d. Geometric(p) - so the cost is O(failures) for any n, e.g. p = 1e-12 on 1e9
  bits costs a handful of draws;
* dense (p >= ``DENSE_RATE``): one uniform per item in chunks, ``u < p``.

The crossover is where a geometric draw (~20 ns, logarithms) costs as much as the
1/p uniforms (~4 ns each) it replaces; bench/bench_faults.py measures it (see
docs/FAULTS.md). Randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math

import numpy as np

# measured crossover (bench/bench_faults.py, docs/FAULTS.md); both paths are exact
DENSE_RATE = 0.25
_CHUNK = 1 << 20


def bernoulli_positions(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions in ``[0, n)`` of an i.i.d. Bernoulli(``p``) process.

    Parameters
    ----------
    n : int >= 0
    p : float in [0, 1]
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (k,), int64, strictly increasing; k ~ Binomial(n, p)
    """
    if n <= 0 or p <= 0.0:
        return np.empty(0, dtype=np.int64)
    if p >= DENSE_RATE:
        parts = []
        for start in range(0, n, _CHUNK):
            u = rng.random(min(_CHUNK, n - start))
            parts.append(np.flatnonzero(u < p).astype(np.int64) + start)
        return np.concatenate(parts)
    parts = []
    last = -1  # position of the previous failure
    while True:
        mean = (n - 1 - last) * p
        m = int(mean + 6.0 * math.sqrt(mean) + 16)
        gaps = rng.geometric(p, size=m)
        # a gap beyond n ends the process; clipping keeps the cumulative sum in int64
        np.minimum(gaps, n + 1, out=gaps)
        pos = np.cumsum(gaps)
        pos += last
        cut = int(np.searchsorted(pos, n))
        parts.append(pos[:cut])
        if cut < m:
            break
        last = int(pos[-1])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def draw_kinds(k: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fault kind per fault, uint8 (k,): 0 flip, 1 sa0, 2 sa1 with probabilities ``weights``.

    A single-kind model consumes no randomness.
    """
    nz = np.flatnonzero(weights > 0)
    if len(nz) == 1:
        return np.full(k, nz[0], dtype=np.uint8)
    cw = np.cumsum(weights)
    cw[-1] = 1.0  # guard against rounding: u < 1 always falls in a bin
    return np.searchsorted(cw, rng.random(k), side="right").astype(np.uint8)
