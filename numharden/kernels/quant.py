"""Activation quantisation kernels (bit-exact: no fastmath, division not reciprocal)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_CHUNK = 16384


@njit(cache=True, nogil=True, parallel=True)
def act_quant_fwd(x, clip, s, y, codes):
    """codes = rint(clip(x, 0, clip) / s), y = codes * s; NaN maps to code 0. Flat arrays."""
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            v = x[i]
            if v > clip:
                v = clip
            if not v >= 0:  # negative or NaN
                v = 0
            q = np.rint(v / s)
            codes[i] = q
            y[i] = codes[i] * s


@njit(cache=True, nogil=True, parallel=True)
def act_dequant(codes, s, y):
    """y = codes * s. Flat arrays."""
    n = codes.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            y[i] = codes[i] * s

