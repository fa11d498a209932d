"""Elementwise kernels over flat arrays, parallel over fixed-size chunks.

Each parallel kernel calls a serial kernel on the slices of a chunk: the same loop
inlined into a prange body does not vectorise (numba 0.68; clamp 1.6 vs 0.2 ns per
element on one thread), as a call it does."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

CHUNK = 16384
# below this many elements a kernel runs on the calling thread: a parallel region costs
# microseconds when the cores are free and milliseconds when another process holds one
SERIAL_BELOW = 1 << 17


@njit(cache=True, nogil=True, inline="always")
def sel(m, a, b):
    """a if m else b. Written as a call: an inline conditional expression inside a
    prange body compiles to code ~30x slower (numba 0.68), the call vectorises."""
    return a if m else b


@njit(cache=True, nogil=True)
def _window_vjp_chunk(gy, x, lo, hi, gx):
    z = gy.dtype.type(0)
    for i in range(x.size):
        v = x[i]
        gx[i] = sel((v > lo) & (v < hi), gy[i], z)


@njit(cache=True, nogil=True, parallel=True)
def window_vjp(gy, x, lo, hi, gx):
    """gx = gy where lo < x < hi else 0 (flat arrays; NaN x gives 0)."""
    n = x.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0 = c * CHUNK
        i1 = min(n, i0 + CHUNK)
        _window_vjp_chunk(gy[i0:i1], x[i0:i1], lo, hi, gx[i0:i1])


@njit(cache=True, nogil=True)
def _act_quant_bwd_chunk(gy, x, clip, gx):
    """One chunk of act_quant_bwd; returns its sum of gy where x > clip."""
    n = x.size
    z = gy.dtype.type(0)
    for i in range(n):
        v = x[i]
        gx[i] = sel((v >= 0) & (v <= clip), gy[i], z)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    b = 0
    while b + 8 <= n:
        s0 += sel(x[b] > clip, np.float64(gy[b]), 0.0)
        s1 += sel(x[b + 1] > clip, np.float64(gy[b + 1]), 0.0)
        s2 += sel(x[b + 2] > clip, np.float64(gy[b + 2]), 0.0)
        s3 += sel(x[b + 3] > clip, np.float64(gy[b + 3]), 0.0)
        s4 += sel(x[b + 4] > clip, np.float64(gy[b + 4]), 0.0)
        s5 += sel(x[b + 5] > clip, np.float64(gy[b + 5]), 0.0)
        s6 += sel(x[b + 6] > clip, np.float64(gy[b + 6]), 0.0)
        s7 += sel(x[b + 7] > clip, np.float64(gy[b + 7]), 0.0)
        b += 8
    for i in range(b, n):
        s0 += sel(x[i] > clip, np.float64(gy[i]), 0.0)
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True, nogil=True, parallel=True)
def act_quant_bwd(gy, x, clip, gx, part):
    """gx = gy where 0 <= x <= clip else 0; part[c] = sum of gy where x > clip in chunk c.

    part has one slot per CHUNK-sized chunk, so the caller's ordered sum of it does not
    depend on the thread count. Within a chunk, 8 interleaved float64 partial sums
    (element i goes to i % 8) keep the additions independent, then add in order."""
    n = x.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0 = c * CHUNK
        i1 = min(n, i0 + CHUNK)
        part[c] = _act_quant_bwd_chunk(gy[i0:i1], x[i0:i1], clip, gx[i0:i1])


@njit(cache=True, nogil=True)
def clamp_serial(x, lo, hi, y):
    """clamp on the calling thread (small arrays)."""
    for i in range(x.size):
        v = x[i]
        v = sel(v < lo, lo, v)
        y[i] = sel(v > hi, hi, v)


@njit(cache=True, nogil=True, parallel=True)
def clamp(x, lo, hi, y):
    """y = min(max(x, lo), hi) with NaN kept (as np.clip). Flat arrays."""
    n = x.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0 = c * CHUNK
        i1 = min(n, i0 + CHUNK)
        clamp_serial(x[i0:i1], lo, hi, y[i0:i1])


@njit(cache=True, nogil=True, parallel=True)
def channel_affine(x, a, c, y):
    """y[m, j] = x[m, j] * a[j] + c[j] for x, y of shape (M, C)."""
    M = x.shape[0]
    rows = max(1, CHUNK // max(x.shape[1], 1))
    for b in prange((M + rows - 1) // rows):
        for m in range(b * rows, min(M, (b + 1) * rows)):
            xr = x[m]
            yr = y[m]
            for j in range(x.shape[1]):
                yr[j] = xr[j] * a[j] + c[j]
