"""Register-blocked float32 weight gradient of the NHWC convolution (AVX2 + FMA).

gw[kh, kw, ci, co] = sum over (n, oh, ow) of x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, ci]
* gy[n, oh, ow, co]: a GEMM whose rows are the K = KH*KW*Cig reduction steps of the forward
and whose reduction runs over output pixels. A register tile is 6 rows x 16 output
channels. The batch is cut into a fixed number of chunks (independent of the thread
count, so the sum order and the bits are too); each chunk accumulates its own partial
gradient, and the partials are added in chunk order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv_fast import TILE_C, TILE_P, _fill
from .simd import vbcast, vfma, vload, vstore

CHUNKS = 8  # partial gradients; fixed so results do not depend on the thread count


@njit(cache=True, nogil=True, inline="always")
def _store_row(part, off, a0, a1):
    vstore(part, off, a0)
    vstore(part, off + 8, a1)


@njit(cache=True, nogil=True, parallel=True)
def conv_bwd_weight(x, gy, toff, part, sh, sw, pt, pl, KH, KW, dh, dw, groups, imgs):
    """part[c] = weight gradient of chunk c, packed (groups, nblk, K, 16), float32."""
    N, H, W, C = x.shape
    Ho, Wo, Co = gy.shape[1], gy.shape[2], gy.shape[3]
    Cig = C // groups
    Cog = Co // groups
    K = KH * KW * Cig
    nblk = (Cog + TILE_C - 1) // TILE_C
    nchunks = part.shape[0]
    padded = pt > 0 or pl > 0 or (Ho - 1) * sh + (KH - 1) * dh + 1 - pt > H \
        or (Wo - 1) * sw + (KW - 1) * dw + 1 - pl > W
    Wp = (Wo - 1) * sw + (KW - 1) * dw + 1 if padded else W
    rows = (Ho - 1) * sh + (KH - 1) * dh + 1
    img = rows * Wp * C if padded else H * W * C
    offs = np.empty(K, dtype=np.int64)
    for k in range(K):
        offs[k] = toff[k, 0] * Wp * C + toff[k, 1] * C + toff[k, 2]
    ngroups = (N + imgs - 1) // imgs
    xf = x.reshape(-1)
    gyf = gy.reshape(-1)
    for c in prange(nchunks):
        pf = part[c]
        pf[:] = 0
        g_lo = c * ngroups // nchunks
        g_hi = (c + 1) * ngroups // nchunks
        src = np.empty(imgs * img if padded else 0, dtype=np.float32)
        pix = np.empty(imgs * Ho * Wo, dtype=np.int64)
        for ig in range(g_lo, g_hi):
            n0 = ig * imgs
            nimg = min(imgs, N - n0)
            if padded:
                _fill(x, n0, nimg, -pt, rows, pl, Wp, src)
                origin = 0
                s = src
            else:
                origin = n0 * img
                s = xf
            npx = nimg * Ho * Wo
            t = 0
            for i in range(nimg):
                for r in range(Ho):
                    for q in range(Wo):
                        pix[t] = origin + i * img + (r * sh * Wp + q * sw) * C
                        t += 1
            gy0 = n0 * Ho * Wo * Co
            for g in range(groups):
                for cb in range(nblk):
                    nvalid = min(TILE_C, Cog - cb * TILE_C)
                    blk = g * nblk + cb
                    gyc = gy0 + g * Cog + cb * TILE_C
                    for r0 in range(0, K, TILE_P):
                        o0 = offs[r0] + g * Cig
                        o1 = offs[min(r0 + 1, K - 1)] + g * Cig
                        o2 = offs[min(r0 + 2, K - 1)] + g * Cig
                        o3 = offs[min(r0 + 3, K - 1)] + g * Cig
                        o4 = offs[min(r0 + 4, K - 1)] + g * Cig
                        o5 = offs[min(r0 + 5, K - 1)] + g * Cig
                        base = (blk * K + r0) * TILE_C
                        nr = min(TILE_P, K - r0)
                        # resume this chunk's partial sums (clamped rows reload row K-1)
                        a00 = vload(pf, base); a01 = vload(pf, base + 8)
                        b = base + TILE_C * min(1, nr - 1)
                        a10 = vload(pf, b); a11 = vload(pf, b + 8)
                        b = base + TILE_C * min(2, nr - 1)
                        a20 = vload(pf, b); a21 = vload(pf, b + 8)
                        b = base + TILE_C * min(3, nr - 1)
                        a30 = vload(pf, b); a31 = vload(pf, b + 8)
                        b = base + TILE_C * min(4, nr - 1)
                        a40 = vload(pf, b); a41 = vload(pf, b + 8)
                        b = base + TILE_C * min(5, nr - 1)
                        a50 = vload(pf, b); a51 = vload(pf, b + 8)
                        if nvalid == TILE_C:
                            for m in range(npx):
                                q = pix[np.uint64(m)]
                                e = gyc + m * Co
                                g0 = vload(gyf, e)
                                g1 = vload(gyf, e + 8)
                                v = vbcast(s, q + o0)
                                a00 = vfma(v, g0, a00)
                                a01 = vfma(v, g1, a01)
                                v = vbcast(s, q + o1)
                                a10 = vfma(v, g0, a10)
                                a11 = vfma(v, g1, a11)
                                v = vbcast(s, q + o2)
                                a20 = vfma(v, g0, a20)
                                a21 = vfma(v, g1, a21)
                                v = vbcast(s, q + o3)
                                a30 = vfma(v, g0, a30)
                                a31 = vfma(v, g1, a31)
                                v = vbcast(s, q + o4)
                                a40 = vfma(v, g0, a40)
                                a41 = vfma(v, g1, a41)
                                v = vbcast(s, q + o5)
                                a50 = vfma(v, g0, a50)
                                a51 = vfma(v, g1, a51)
                        else:  # channel tail: gy rows are read through a zero-padded copy
                            gt = np.zeros(TILE_C, dtype=np.float32)
                            for m in range(npx):
                                q = pix[np.uint64(m)]
                                e = gyc + m * Co
                                for lane in range(nvalid):
                                    gt[lane] = gyf[e + lane]
                                g0 = vload(gt, 0)
                                g1 = vload(gt, 8)
                                v = vbcast(s, q + o0)
                                a00 = vfma(v, g0, a00)
                                a01 = vfma(v, g1, a01)
                                v = vbcast(s, q + o1)
                                a10 = vfma(v, g0, a10)
                                a11 = vfma(v, g1, a11)
                                v = vbcast(s, q + o2)
                                a20 = vfma(v, g0, a20)
                                a21 = vfma(v, g1, a21)
                                v = vbcast(s, q + o3)
                                a30 = vfma(v, g0, a30)
                                a31 = vfma(v, g1, a31)
                                v = vbcast(s, q + o4)
                                a40 = vfma(v, g0, a40)
                                a41 = vfma(v, g1, a41)
                                v = vbcast(s, q + o5)
                                a50 = vfma(v, g0, a50)
                                a51 = vfma(v, g1, a51)
                        _store_row(pf, base, a00, a01)
                        if nr > 1:
                            _store_row(pf, base + TILE_C, a10, a11)
                        if nr > 2:
                            _store_row(pf, base + 2 * TILE_C, a20, a21)
                        if nr > 3:
                            _store_row(pf, base + 3 * TILE_C, a30, a31)
                        if nr > 4:
                            _store_row(pf, base + 4 * TILE_C, a40, a41)
                        if nr > 5:
                            _store_row(pf, base + 5 * TILE_C, a50, a51)


def unpack_weight_grad(part, KH, KW, Cig, Co, groups):
    """Sum chunk partials in order and unpack (groups, nblk, K, 16) -> HWIO (KH,KW,Cig,Co)."""
    Cog = Co // groups
    total = part[0].copy()
    for c in range(1, part.shape[0]):
        total += part[c]
    nblk = -(-Cog // TILE_C)
    t = total.reshape(groups, nblk, KH * KW * Cig, TILE_C).transpose(2, 0, 1, 3)
    t = t.reshape(KH * KW * Cig, groups, nblk * TILE_C)[:, :, :Cog]
    return np.ascontiguousarray(t.reshape(KH, KW, Cig, Co))
