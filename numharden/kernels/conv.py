"""Direct convolution kernels, NHWC activations and HWIO weights (generic shapes).

Loops run over output channels innermost, so the contiguous Cout axis of HWIO weights
vectorises. Parallel loops cover disjoint output rows; every reduction runs in a fixed
order, so results do not depend on the thread count.
"""

from __future__ import annotations

from numba import njit, prange


@njit(cache=True, nogil=True, parallel=True)
def conv_fwd_generic(x, w, b, y, sh, sw, pt, pl, dh, dw, groups):
    """y[n,oh,ow,:] = b + sum x * w over the window, any stride/dilation/groups."""
    N, H, W, _ = x.shape
    KH, KW, Cig, Co = w.shape
    Ho, Wo = y.shape[1], y.shape[2]
    Cog = Co // groups
    for t in prange(N * Ho):
        n = t // Ho
        oh = t - n * Ho
        for ow in range(Wo):
            out = y[n, oh, ow]
            for co in range(Co):
                out[co] = b[co]
            for kh in range(KH):
                ih = oh * sh - pt + kh * dh
                if ih < 0 or ih >= H:
                    continue
                for kw in range(KW):
                    iw = ow * sw - pl + kw * dw
                    if iw < 0 or iw >= W:
                        continue
                    xr = x[n, ih, iw]
                    wr = w[kh, kw]
                    for g in range(groups):
                        for ci in range(Cig):
                            xv = xr[g * Cig + ci]
                            for co in range(g * Cog, (g + 1) * Cog):
                                out[co] += xv * wr[ci, co]


@njit(cache=True, nogil=True, parallel=True)
def conv_bwd_input(gy, wt, gx, sh, sw, pt, pl, dh, dw, groups):
    """gx = transposed convolution of gy (gather form); wt is w as (KH,KW,Co,Cig)."""
    N, H, W, _ = gx.shape
    KH, KW, Co, Cig = wt.shape
    Ho, Wo = gy.shape[1], gy.shape[2]
    Cog = Co // groups
    for t in prange(N * H):
        n = t // H
        ih = t - n * H
        for iw in range(W):
            out = gx[n, ih, iw]
            out[:] = 0
            for kh in range(KH):
                r = ih + pt - kh * dh
                if r < 0 or r % sh != 0:
                    continue
                oh = r // sh
                if oh >= Ho:
                    continue
                for kw in range(KW):
                    c = iw + pl - kw * dw
                    if c < 0 or c % sw != 0:
                        continue
                    ow = c // sw
                    if ow >= Wo:
                        continue
                    gr = gy[n, oh, ow]
                    wr = wt[kh, kw]
                    for g in range(groups):
                        for co in range(g * Cog, (g + 1) * Cog):
                            gv = gr[co]
                            for ci in range(Cig):
                                out[g * Cig + ci] += gv * wr[co, ci]


@njit(cache=True, nogil=True, parallel=True)
def conv_bwd_weight(gy, x, gw, sh, sw, pt, pl, dh, dw, groups):
    """gw[kh,kw,ci,co] = sum over n,oh,ow of x * gy; one parallel task per (kh, kw)."""
    N, H, W, _ = x.shape
    KH, KW, Cig, Co = gw.shape
    Ho, Wo = gy.shape[1], gy.shape[2]
    Cog = Co // groups
    for t in prange(KH * KW):
        kh = t // KW
        kw = t - kh * KW
        acc = gw[kh, kw]
        acc[:] = 0
        for n in range(N):
            for oh in range(Ho):
                ih = oh * sh - pt + kh * dh
                if ih < 0 or ih >= H:
                    continue
                for ow in range(Wo):
                    iw = ow * sw - pl + kw * dw
                    if iw < 0 or iw >= W:
                        continue
                    xr = x[n, ih, iw]
                    gr = gy[n, oh, ow]
                    for g in range(groups):
                        for ci in range(Cig):
                            xv = xr[g * Cig + ci]
                            for co in range(g * Cog, (g + 1) * Cog):
                                acc[ci, co] += xv * gr[co]
