"""Float32 convolution for thin inputs and narrow outputs (first layers: 1-4 input
channels, fewer than 16 output channels, stride 1 along the width).

The channel-tiled kernel of :mod:`.conv_fast` fills 16 output channels per register
tile; a LeNet-5 first layer (1 -> 6 channels) would use 6 of its 16 lanes. Here the
vector lanes run along the output *row* instead: the register tile is 6 output
channels x 16 consecutive output pixels (12 ``ymm`` accumulators); each reduction step
loads two vectors of 8 neighbouring input pixels and broadcasts 6 weights. The image is
first copied into a zero-padded planar (C, H, W) buffer with slack at the row ends, so
the micro-kernel never tests bounds.

Padded taps are multiplied by zero rather than skipped, which differs from PyTorch
only when a weight is non-finite (0 * inf = NaN); the wrapper sends such weights to the
tap-skipping kernel. Every output is reduced over its taps in (kh, kw, ci) order with
fused multiply-adds, then bias, residual and clamp are applied, as in :mod:`.conv_fast`,
so both kernels give the same bits (up to the sign of a zero sum).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import vbcast, vfma, vload, vstore, vzero

TILE_CO = 6   # output channels per register tile
TILE_W = 16   # output pixels per register tile (two 8-lane vectors)


def pack_weight(w):
    """HWIO (KH, KW, Ci, Co) -> (blocks, KH, KW, Ci, 6), zero-filled past Co; flat."""
    KH, KW, Ci, Co = w.shape
    nb = -(-Co // TILE_CO)
    wp = np.zeros((KH, KW, Ci, nb * TILE_CO), np.float32)
    wp[..., :Co] = w
    return np.ascontiguousarray(wp.reshape(KH, KW, Ci, nb, TILE_CO).transpose(3, 0, 1, 2, 4)
                                ).reshape(-1)


@njit(cache=True, nogil=True)
def _image(x, n, buf, Hp, Wb, pt, pl, wp, b, y, res, has_res, act, lo, hi,
           KH, KW, Ci, dh, dw, sh, tmp):
    """Output of image n (buf: its padded planar copy is written here)."""
    H, W = x.shape[1], x.shape[2]
    Ho, Wo, Co = y.shape[1], y.shape[2], y.shape[3]
    for ci in range(Ci):
        for i in range(H):
            row = (ci * Hp + pt + i) * Wb + pl
            for j in range(W):
                buf[row + j] = x[n, i, j, ci]
    nblk = (Co + TILE_CO - 1) // TILE_CO
    K = KH * KW * Ci
    for oh in range(Ho):
        for cb in range(nblk):
            wb = cb * K * TILE_CO
            c0 = cb * TILE_CO
            nc = min(TILE_CO, Co - c0)
            for ow0 in range(0, Wo, TILE_W):
                a00 = vzero(); a01 = vzero(); a10 = vzero(); a11 = vzero()
                a20 = vzero(); a21 = vzero(); a30 = vzero(); a31 = vzero()
                a40 = vzero(); a41 = vzero(); a50 = vzero(); a51 = vzero()
                k = 0
                for kh in range(KH):
                    for kw in range(KW):
                        for ci in range(Ci):
                            q = (ci * Hp + oh * sh + kh * dh) * Wb + ow0 + kw * dw
                            x0 = vload(buf, q)
                            x1 = vload(buf, q + 8)
                            o = wb + k * TILE_CO
                            w = vbcast(wp, o)
                            a00 = vfma(x0, w, a00)
                            a01 = vfma(x1, w, a01)
                            w = vbcast(wp, o + 1)
                            a10 = vfma(x0, w, a10)
                            a11 = vfma(x1, w, a11)
                            w = vbcast(wp, o + 2)
                            a20 = vfma(x0, w, a20)
                            a21 = vfma(x1, w, a21)
                            w = vbcast(wp, o + 3)
                            a30 = vfma(x0, w, a30)
                            a31 = vfma(x1, w, a31)
                            w = vbcast(wp, o + 4)
                            a40 = vfma(x0, w, a40)
                            a41 = vfma(x1, w, a41)
                            w = vbcast(wp, o + 5)
                            a50 = vfma(x0, w, a50)
                            a51 = vfma(x1, w, a51)
                            k += 1
                vstore(tmp, 0, a00); vstore(tmp, 8, a01)
                vstore(tmp, 16, a10); vstore(tmp, 24, a11)
                vstore(tmp, 32, a20); vstore(tmp, 40, a21)
                vstore(tmp, 48, a30); vstore(tmp, 56, a31)
                vstore(tmp, 64, a40); vstore(tmp, 72, a41)
                vstore(tmp, 80, a50); vstore(tmp, 88, a51)
                for j in range(min(TILE_W, Wo - ow0)):
                    for c in range(nc):
                        v = tmp[c * TILE_W + j] + b[c0 + c]
                        if has_res:
                            v = v + res[n, oh, ow0 + j, c0 + c]
                        if act:  # NaN passes both tests, as np.clip keeps it
                            if v < lo:
                                v = lo
                            if v > hi:
                                v = hi
                        y[n, oh, ow0 + j, c0 + c] = v


@njit(cache=True, nogil=True, parallel=True)
def conv_fwd(x, wp, b, y, res, has_res, KH, KW, sh, pt, pb, pl, dh, dw, act, lo, hi, ntasks):
    """y = act(conv(x) + b (+ res)) for stride (sh, 1); images split over ntasks tasks."""
    N, H, W, Ci = x.shape
    Wo = y.shape[2]
    Hp = H + pt + pb
    # row length: the padded row plus slack so the last 16-pixel tile reads in bounds
    Wb = max(W + pl, ((Wo + TILE_W - 1) // TILE_W) * TILE_W + (KW - 1) * dw) + 8
    ntasks = max(1, min(ntasks, N))
    for t in prange(ntasks):
        buf = np.zeros(Ci * Hp * Wb + 8, dtype=np.float32)  # borders stay zero
        tmp = np.empty(TILE_CO * TILE_W, dtype=np.float32)
        for n in range(t * N // ntasks, (t + 1) * N // ntasks):
            _image(x, n, buf, Hp, Wb, pt, pl, wp, b, y, res, has_res, act, lo, hi,
                   KH, KW, Ci, dh, dw, sh, tmp)
