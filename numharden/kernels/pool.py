"""Max and average pooling kernels (NHWC), forward and backward."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv_tiles import tap_range
from .elementwise import sel
from .simd import vextract, vload, vsplat, vstore, vtake


@njit(cache=True, nogil=True, inline="always")
def _taps(o, s, pad, k, d, size):
    """Start of window o and the range [k0, k1) of its taps inside [0, size)."""
    k0, k1 = tap_range(o, s, pad, k, d, size)
    return o * s - pad, k0, k1


@njit(cache=True, nogil=True, parallel=True)
def maxpool_fwd(x, y, arg, kh_, kw_, sh, sw, pt, pl, dh, dw, want_arg):
    """Window max; arg (if want_arg) holds ih*W+iw of the first max in row-major scan,
    a NaN wins (PyTorch). Padding windows hold at least one input element."""
    N, H, W, C = x.shape
    Ho, Wo = y.shape[1], y.shape[2]
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    af = arg.reshape(-1)
    for t in prange(N * Ho):
        n = t // Ho
        oh = t - n * Ho
        h0, a0, a1 = _taps(oh, sh, pt, kh_, dh, H)
        for ow in range(Wo):
            w0, b0, b1 = _taps(ow, sw, pl, kw_, dw, W)
            yo = (t * Wo + ow) * C
            pos0 = (h0 + a0 * dh) * W + w0 + b0 * dw
            for c in range(C):
                yf[yo + c] = -np.inf
            if want_arg:
                for c in range(C):
                    af[yo + c] = pos0
            for kh in range(a0, a1):
                ih = h0 + kh * dh
                for kw in range(b0, b1):
                    iw = w0 + kw * dw
                    xo = ((n * H + ih) * W + iw) * C
                    if want_arg:
                        pos = ih * W + iw
                        for c in range(C):  # branch-free so that it vectorises
                            v = xf[xo + c]
                            b = yf[yo + c]
                            take = (v > b) | (v != v)
                            yf[yo + c] = sel(take, v, b)
                            af[yo + c] = sel(take, pos, af[yo + c])
                    else:
                        for c in range(C):
                            v = xf[xo + c]
                            b = yf[yo + c]
                            yf[yo + c] = sel((v > b) | (v != v), v, b)


@njit(cache=True, nogil=True)
def _maxpool_row_f32(xf, yf, af, n, oh, t, H, W, C, Wo, kh_, kw_, sh, sw, pt, pl, dh, dw,
                     want_arg, tmp):
    """One output row of maxpool_fwd for float32, 8 channels per vector.

    With C % 8 != 0 the last vector of a pixel also reads (and writes) the first lanes
    of the next pixel; pixels go in ascending order so the next pixel overwrites them,
    and the row's last pixel and reads past the end of x go through tmp."""
    h0, a0, a1 = _taps(oh, sh, pt, kh_, dh, H)
    row_end = (t + 1) * Wo * C
    for ow in range(Wo):
        w0, b0, b1 = _taps(ow, sw, pl, kw_, dw, W)
        yo = (t * Wo + ow) * C
        pos0 = (h0 + a0 * dh) * W + w0 + b0 * dw
        for cb in range(0, C, 8):
            nv = min(8, C - cb)
            best = vsplat(np.float32(-np.inf))
            idx = vsplat(np.float32(pos0))
            for kh in range(a0, a1):
                ih = h0 + kh * dh
                for kw in range(b0, b1):
                    iw = w0 + kw * dw
                    xo = ((n * H + ih) * W + iw) * C + cb
                    if xo + 8 <= xf.size:
                        v = vload(xf, xo)
                    else:
                        for lane in range(nv):
                            tmp[lane] = xf[xo + lane]
                        v = vload(tmp, 0)
                    if want_arg:
                        idx = vtake(v, best, vsplat(np.float32(ih * W + iw)), idx)
                    best = vtake(v, best, v, best)
            if nv == 8 or yo + cb + 8 <= row_end:
                vstore(yf, yo + cb, best)
            else:
                for lane in range(nv):
                    yf[yo + cb + lane] = vextract(best, lane)
            if want_arg:
                for lane in range(nv):
                    af[yo + cb + lane] = np.int64(vextract(idx, lane))


@njit(cache=True, nogil=True)
def _maxpool_rows_f32(xf, yf, af, t0, t1, H, W, C, Ho, Wo, kh_, kw_, sh, sw, pt, pl, dh, dw,
                      want_arg):
    """Output rows [t0, t1) (t = n * Ho + oh) of maxpool_fwd_f32."""
    tmp = np.zeros(8, dtype=np.float32)
    for t in range(t0, t1):
        n = t // Ho
        _maxpool_row_f32(xf, yf, af, n, t - n * Ho, t, H, W, C, Wo, kh_, kw_, sh, sw, pt, pl,
                         dh, dw, want_arg, tmp)


ROWS = 32  # output rows per parallel task of maxpool_fwd_f32


@njit(cache=True, nogil=True, parallel=True)
def maxpool_fwd_f32(x, y, arg, kh_, kw_, sh, sw, pt, pl, dh, dw, want_arg):
    """maxpool_fwd for float32 inputs with H*W < 2**24 (indices travel as float32).

    A parallel task is ROWS output rows (one call, one scratch vector): per row, the
    call and allocation cost more than a LeNet-sized row's work."""
    N, H, W, C = x.shape
    Ho, Wo = y.shape[1], y.shape[2]
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    af = arg.reshape(-1)
    rows = N * Ho
    for c in prange((rows + ROWS - 1) // ROWS):
        _maxpool_rows_f32(xf, yf, af, c * ROWS, min(rows, (c + 1) * ROWS), H, W, C, Ho, Wo,
                          kh_, kw_, sh, sw, pt, pl, dh, dw, want_arg)


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
