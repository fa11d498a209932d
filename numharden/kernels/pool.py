"""Max and average pooling kernels (NHWC), forward and backward."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .elementwise import sel


@njit(cache=True, nogil=True, parallel=True)
def maxpool_fwd(x, y, arg, kh_, kw_, sh, sw, pt, pl, dh, dw):
    """Window max; arg holds ih*W+iw of the first max in row-major scan, NaN wins (PyTorch)."""
    N, H, W, C = x.shape
    Ho, Wo = y.shape[1], y.shape[2]
    for t in prange(N * Ho):
        n = t // Ho
        oh = t - n * Ho
        h0 = oh * sh - pt
        while h0 < 0:
            h0 += dh
        for ow in range(Wo):
            w0 = ow * sw - pl
            while w0 < 0:
                w0 += dw
            out = y[n, oh, ow]
            idx = arg[n, oh, ow]
            for c in range(C):
                out[c] = -np.inf
                idx[c] = h0 * W + w0
            for kh in range(kh_):
                ih = oh * sh - pt + kh * dh
                if ih < 0 or ih >= H:
                    continue
                for kw in range(kw_):
                    iw = ow * sw - pl + kw * dw
                    if iw < 0 or iw >= W:
                        continue
                    xr = x[n, ih, iw]
                    pos = ih * W + iw
                    for c in range(C):  # branch-free so that it vectorises
                        v = xr[c]
                        b = out[c]
                        take = (v > b) | (v != v)
                        out[c] = sel(take, v, b)
                        idx[c] = sel(take, pos, idx[c])


@njit(cache=True, nogil=True, parallel=True)
def maxpool_bwd(gy, arg, gx):
    """Scatter gy to the argmax positions; one parallel task per image."""
    N, Ho, Wo, C = gy.shape
    W = gx.shape[2]
    for n in prange(N):
        gx[n] = 0
        for oh in range(Ho):
            for ow in range(Wo):
                for c in range(C):
                    p = arg[n, oh, ow, c]
                    ih = p // W
                    gx[n, ih, p - ih * W, c] += gy[n, oh, ow, c]


@njit(cache=True, nogil=True)
def _window(o, s, pad_lo, k, size, pad_hi, include_pad):
    start = o * s - pad_lo
    end = min(start + k, size + pad_hi)
    count = end - start
    start = max(start, 0)
    end = min(end, size)
    if not include_pad:
        count = end - start
    return start, end, count


@njit(cache=True, nogil=True, parallel=True)
def avgpool_fwd(x, y, kh_, kw_, sh, sw, pt, pb, pl, pr, include_pad):
    """Window mean with PyTorch's divisor (padding counted up to the padded edge)."""
    N, H, W, C = x.shape
    Ho, Wo = y.shape[1], y.shape[2]
    for t in prange(N * Ho):
        n = t // Ho
        oh = t - n * Ho
        h0, h1, ch = _window(oh, sh, pt, kh_, H, pb, include_pad)
        for ow in range(Wo):
            w0, w1, cw = _window(ow, sw, pl, kw_, W, pr, include_pad)
            out = y[n, oh, ow]
            out[:] = 0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    xr = x[n, ih, iw]
                    for c in range(C):
                        out[c] += xr[c]
            div = ch * cw
            for c in range(C):
                out[c] /= div


@njit(cache=True, nogil=True, parallel=True)
def avgpool_bwd(gy, gx, kh_, kw_, sh, sw, pt, pb, pl, pr, include_pad):
    """Scatter gy / divisor over each window; one parallel task per image."""
    N, H, W, C = gx.shape
    Ho, Wo = gy.shape[1], gy.shape[2]
    for n in prange(N):
        gx[n] = 0
        for oh in range(Ho):
            h0, h1, ch = _window(oh, sh, pt, kh_, H, pb, include_pad)
            for ow in range(Wo):
                w0, w1, cw = _window(ow, sw, pl, kw_, W, pr, include_pad)
                g = gy[n, oh, ow]
                div = ch * cw
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        out = gx[n, ih, iw]
                        for c in range(C):
                            out[c] += g[c] / div
