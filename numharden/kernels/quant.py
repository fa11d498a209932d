"""Activation quantisation kernels (bit-exact: no fastmath, division not reciprocal)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_CHUNK = 16384


@njit(cache=True, nogil=True, inline="always")
def _act_quant_range(x, clip, s, y, codes, i0, i1):
    zero = clip - clip  # 0 in the arithmetic's dtype (clip is finite, typed like x)
    for i in range(i0, i1):
        v = min(x[i], clip)  # NaN stays NaN here ...
        v = v if v >= 0 else zero  # ... and becomes 0 here, as negatives do
        q = np.rint(v / s)
        y[i] = q * s
        codes[i] = np.int32(q)  # q in [0, 2**bits - 1]: exact (selects, no branches)


@njit(cache=True, nogil=True, parallel=True)
def act_quant_fwd(x, clip, s, y, codes):
    """codes = rint(clip(x, 0, clip) / s), y = codes * s; NaN maps to code 0. Flat arrays."""
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _act_quant_range(x, clip, s, y, codes, c * _CHUNK, min(n, (c + 1) * _CHUNK))


@njit(cache=True, nogil=True)
def act_quant_fwd_serial(x, clip, s, y, codes):
    """act_quant_fwd on the calling thread (small arrays: no parallel-region cost)."""
    _act_quant_range(x, clip, s, y, codes, 0, x.size)


@njit(cache=True, nogil=True, parallel=True)
def act_dequant(codes, s, y):
    """y = codes * s. Flat arrays."""
    n = codes.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            y[i] = codes[i] * s

