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

from .conv_fast import _fill
from .conv_tiles import TILE_C, TILE_P
from .simd import vadd, vbcast, vfma, vload, vstore, vzero

CHUNKS = 8  # partial gradients; fixed so results do not depend on the thread count


@njit(cache=True, nogil=True, inline="always")
def _store_row(part, off, a0, a1):
    vstore(part, off, a0)
    vstore(part, off + 8, a1)


@njit(cache=True, nogil=True, inline="always")
def _gstep(s, q, o0, o1, o2, o3, o4, o5, g0, g1,
           a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51):
    """One pixel of a 6-row x 16-channel weight-gradient tile."""
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
    return a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51


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
                        # full 16-lane loads of gy; with a channel tail the spare lanes
                        # read the next pixel's values, which land in padding lanes that
                        # unpack drops -- except past the end of gy: those pixels go
                        # through a zero-padded copy
                        m_fast = npx
                        if nvalid < TILE_C:
                            m_fast = max(0, min(npx, (gyf.size - TILE_C - gyc) // Co + 1))
                        for m in range(m_fast):
                            e = gyc + m * Co
                            a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51 = _gstep(
                                s, pix[np.uint64(m)], o0, o1, o2, o3, o4, o5,
                                vload(gyf, e), vload(gyf, e + 8),
                                a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51)
                        gt = np.zeros(TILE_C, dtype=np.float32)
                        for m in range(m_fast, npx):
                            e = gyc + m * Co
                            for lane in range(nvalid):
                                gt[lane] = gyf[e + lane]
                            a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51 = _gstep(
                                s, pix[m], o0, o1, o2, o3, o4, o5, vload(gt, 0), vload(gt, 8),
                                a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51)
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


@njit(cache=True, nogil=True, inline="always")
def _add_row(buf, off, a0, a1):
    vstore(buf, off, vadd(vload(buf, off), a0))
    vstore(buf, off + 8, vadd(vload(buf, off + 8), a1))


@njit(cache=True, nogil=True)
def _scatter_task(gyf, wt, buf, pix, npx, gy0, Co, Cog, groups, nblk, Cpad, toffs):
    """Add one task's gy pixels, times the transposed weights, into its padded buffer."""
    T = toffs.shape[0]
    for g in range(groups):
        for cb in range(nblk):
            blk = g * nblk + cb
            c0 = blk * TILE_C
            for t0 in range(0, npx, TILE_P):
                count = min(TILE_P, npx - t0)
                e0 = gy0 + t0 * Co + g * Cog
                e1 = gy0 + min(t0 + 1, npx - 1) * Co + g * Cog
                e2 = gy0 + min(t0 + 2, npx - 1) * Co + g * Cog
                e3 = gy0 + min(t0 + 3, npx - 1) * Co + g * Cog
                e4 = gy0 + min(t0 + 4, npx - 1) * Co + g * Cog
                e5 = gy0 + min(t0 + 5, npx - 1) * Co + g * Cog
                for t in range(T):
                    wo = (blk * T + t) * Cog * TILE_C
                    a00 = vzero(); a01 = vzero(); a10 = vzero(); a11 = vzero()
                    a20 = vzero(); a21 = vzero(); a30 = vzero(); a31 = vzero()
                    a40 = vzero(); a41 = vzero(); a50 = vzero(); a51 = vzero()
                    for co in range(Cog):
                        w0 = vload(wt, wo)
                        w1 = vload(wt, wo + 8)
                        wo += TILE_C
                        v = vbcast(gyf, e0 + co)
                        a00 = vfma(v, w0, a00)
                        a01 = vfma(v, w1, a01)
                        v = vbcast(gyf, e1 + co)
                        a10 = vfma(v, w0, a10)
                        a11 = vfma(v, w1, a11)
                        v = vbcast(gyf, e2 + co)
                        a20 = vfma(v, w0, a20)
                        a21 = vfma(v, w1, a21)
                        v = vbcast(gyf, e3 + co)
                        a30 = vfma(v, w0, a30)
                        a31 = vfma(v, w1, a31)
                        v = vbcast(gyf, e4 + co)
                        a40 = vfma(v, w0, a40)
                        a41 = vfma(v, w1, a41)
                        v = vbcast(gyf, e5 + co)
                        a50 = vfma(v, w0, a50)
                        a51 = vfma(v, w1, a51)
                    o = toffs[t] + c0
                    _add_row(buf, pix[t0] + o, a00, a01)
                    if count > 1:
                        _add_row(buf, pix[t0 + 1] + o, a10, a11)
                    if count > 2:
                        _add_row(buf, pix[t0 + 2] + o, a20, a21)
                    if count > 3:
                        _add_row(buf, pix[t0 + 3] + o, a30, a31)
                    if count > 4:
                        _add_row(buf, pix[t0 + 4] + o, a40, a41)
                    if count > 5:
                        _add_row(buf, pix[t0 + 5] + o, a50, a51)


@njit(cache=True, nogil=True, parallel=True)
def conv_bwd_input(gy, wt, gx, sh, sw, pt, pl, KH, KW, dh, dw, groups):
    """gx = transposed convolution of gy, scatter form, one image per task.

    wt packs w as (groups, Cig/16 blocks, KH, KW, Co/groups, 16) (see pack_transposed).
    Each task adds 6-pixel x 16-channel tiles of gy @ w^T for every tap into a padded
    buffer whose channels are padded to the blocks, then crops it into gx; taps are
    visited in (kh, kw) order and pixels in row-major order, so the bits are fixed.
    """
    N, H, W, Ci = gx.shape
    Ho, Wo, Co = gy.shape[1], gy.shape[2], gy.shape[3]
    Cig = Ci // groups
    Cog = Co // groups
    nblk = (Cig + TILE_C - 1) // TILE_C
    Cpad = groups * nblk * TILE_C
    Hp = max((Ho - 1) * sh + (KH - 1) * dh + 1, H + pt)
    Wp = max((Wo - 1) * sw + (KW - 1) * dw + 1, W + pl)
    toffs = np.empty(KH * KW, dtype=np.int64)
    for kh in range(KH):
        for kw in range(KW):
            toffs[kh * KW + kw] = (kh * dh * Wp + kw * dw) * Cpad
    gyf = gy.reshape(-1)
    for n in prange(N):
        buf = np.zeros(Hp * Wp * Cpad + TILE_C, dtype=np.float32)
        pix = np.empty(Ho * Wo, dtype=np.int64)
        for oh in range(Ho):
            for ow in range(Wo):
                pix[oh * Wo + ow] = (oh * sh * Wp + ow * sw) * Cpad
        _scatter_task(gyf, wt, buf, pix, Ho * Wo, n * Ho * Wo * Co, Co, Cog, groups, nblk,
                      Cpad, toffs)
        for ih in range(H):
            for iw in range(W):
                src = ((ih + pt) * Wp + iw + pl) * Cpad
                for g in range(groups):
                    for c in range(Cig):
                        gx[n, ih, iw, g * Cig + c] = buf[src + g * nblk * TILE_C + c]


def pack_transposed(w, groups):
    """HWIO (KH, KW, Cig, Co) -> flat (groups, ceil(Cig/16), KH, KW, Co/groups, 16)."""
    KH, KW, Cig, Co = w.shape
    Cog = Co // groups
    nblk = -(-Cig // TILE_C)
    wg = np.zeros((KH, KW, nblk * TILE_C, groups, Cog), dtype=np.float32)
    wg[:, :, :Cig] = w.reshape(KH, KW, Cig, groups, Cog)
    wt = wg.reshape(KH, KW, nblk, TILE_C, groups, Cog).transpose(4, 2, 0, 1, 5, 3)
    return np.ascontiguousarray(wt).reshape(-1)

