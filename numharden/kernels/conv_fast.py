"""Register-blocked float32 convolution kernels (AVX2 + FMA through :mod:`.simd`).

Forward: implicit GEMM over a tile of 6 output pixels x 16 output channels, 12 ``ymm``
accumulators held across the whole (kh, kw, ci) reduction; weights are pre-packed as
``(groups, Co/16 blocks, KH, KW, Cig, 16)`` so each reduction step reads 64 contiguous
bytes. Each parallel task handles one band of output rows of one image, copying the
input rows it needs into a zero-padded scratch buffer that stays in cache, so the
micro-kernel never tests bounds.

Every output element is reduced in the same (kh, kw, ci) order with fused multiply-adds
whatever the tiling or the thread count, then the bias is added and the optional
clamp applied, so results are deterministic and a fused activation is bit-identical to
applying it afterwards.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import vadd, vbcast, vextract, vfma, vload, vmax, vmin, vsplat, vstore, vzero

TILE_P = 6   # output pixels per register tile
TILE_C = 16  # output channels per register tile (two 8-lane vectors)


@njit(cache=True, nogil=True, inline="always")
def _put(y, off, v, nvalid, act, lo, hi):
    """Clamp (if act) and store the first nvalid lanes of v at y[off:]."""
    if act:
        v = vmin(vmax(v, vsplat(lo)), vsplat(hi))
    if nvalid >= 8:
        vstore(y, off, v)
    else:
        for lane in range(nvalid):
            y[off + lane] = vextract(v, lane)


@njit(cache=True, nogil=True, inline="always")
def _put_pixel(y, off, a0, a1, b0, b1, nvalid, act, lo, hi):
    _put(y, off, vadd(a0, b0), min(nvalid, 8), act, lo, hi)
    if nvalid > 8:
        _put(y, off + 8, vadd(a1, b1), nvalid - 8, act, lo, hi)


@njit(cache=True, nogil=True, inline="always")
def _fill(x, n0, nimg, ih0, rows, pl, Wp, buf):
    """buf[i, r, j, :] = x[n0 + i, ih0 + r, j - pl, :] inside the image, else 0 (flat buf)."""
    H, W, C = x.shape[1], x.shape[2], x.shape[3]
    buf[:] = 0
    j0 = max(pl, 0)
    j1 = min(Wp, W + pl)
    for i in range(nimg):
        for r in range(rows):
            ih = ih0 + r
            if ih < 0 or ih >= H:
                continue
            src = x[n0 + i, ih].reshape(-1)
            dst = ((i * rows + r) * Wp + j0) * C
            buf[dst:dst + (j1 - j0) * C] = src[(j0 - pl) * C:(j1 - pl) * C]


@njit(cache=True, nogil=True, parallel=True)
def conv_fwd(x, wp, bp, toff, y, sh, sw, pt, pl, KH, KW, dh, dw, groups, band, imgs, kc,
             act, lo, hi):
    """y = clamp(conv(x, w) + b), float32 NHWC; wp, bp from pack_weight, toff from tap_table.

    A parallel task is ``imgs`` images (then ``band == Ho``) or one band of ``band``
    output rows; the reduction runs in blocks of ``kc`` steps (``kc < K`` needs
    ``Co/groups % 16 == 0``: partial sums are parked in y).
    """
    N, H, W, C = x.shape
    Ho, Wo, Co = y.shape[1], y.shape[2], y.shape[3]
    Cig = C // groups
    Cog = Co // groups
    K = KH * KW * Cig
    nblk = (Cog + TILE_C - 1) // TILE_C
    padded = pt > 0 or pl > 0 or (Ho - 1) * sh + (KH - 1) * dh + 1 - pt > H \
        or (Wo - 1) * sw + (KW - 1) * dw + 1 - pl > W
    Wp = (Wo - 1) * sw + (KW - 1) * dw + 1 if padded else W
    nbands = (Ho + band - 1) // band
    ngroups = (N + imgs - 1) // imgs
    yf = y.reshape(-1)
    xf = x.reshape(-1)
    for task in prange(ngroups * nbands):
        ng = task // nbands
        n0 = ng * imgs
        nimg = min(imgs, N - n0)
        r0 = (task - ng * nbands) * band
        R = min(Ho, r0 + band) - r0
        rows = (R - 1) * sh + (KH - 1) * dh + 1
        if padded:
            src = np.empty(nimg * rows * Wp * C, dtype=np.float32)
            _fill(x, n0, nimg, r0 * sh - pt, rows, pl, Wp, src)
            origin = 0
            img = rows * Wp * C
        else:
            src = xf
            img = H * W * C
            origin = n0 * img + r0 * sh * W * C
        rowstep = sh * Wp * C
        colstep = sw * C
        # reduction offsets for this source geometry
        offs = np.empty(K, dtype=np.int64)
        for k in range(K):
            offs[k] = toff[k, 0] * Wp * C + toff[k, 1] * C + toff[k, 2]
        npx = nimg * R * Wo
        pix = np.empty(npx + TILE_P, dtype=np.int64)  # source offset of each task pixel
        t = 0
        for i in range(nimg):
            for r in range(R):
                for c in range(Wo):
                    pix[t] = origin + i * img + r * rowstep + c * colstep
                    t += 1
        for t in range(npx, npx + TILE_P):  # the tail tile recomputes the last pixel
            pix[t] = pix[npx - 1]
        for g in range(groups):
            gbase = g * Cig
            for cb in range(nblk):
                nvalid = min(TILE_C, Cog - cb * TILE_C)
                blk = g * nblk + cb
                b0 = vload(bp, blk * TILE_C)
                b1 = vload(bp, blk * TILE_C + 8)
                c0 = g * Cog + cb * TILE_C
                for k0 in range(0, K, kc):
                    k1 = min(K, k0 + kc)
                    last = k1 == K
                    for t0 in range(0, npx, TILE_P):
                        q0 = gbase + pix[t0]
                        q1 = gbase + pix[t0 + 1]
                        q2 = gbase + pix[t0 + 2]
                        q3 = gbase + pix[t0 + 3]
                        q4 = gbase + pix[t0 + 4]
                        q5 = gbase + pix[t0 + 5]
                        count = min(TILE_P, npx - t0)
                        # y offset of the tile's first pixel (task pixels are contiguous in y
                        # within an image; across images the band is the full height)
                        off = (((n0 * Ho + r0) * Wo) + t0) * Co + c0
                        if k0 == 0:
                            a00 = vzero(); a01 = vzero(); a10 = vzero(); a11 = vzero()
                            a20 = vzero(); a21 = vzero(); a30 = vzero(); a31 = vzero()
                            a40 = vzero(); a41 = vzero(); a50 = vzero(); a51 = vzero()
                        else:  # resume the partial sums of the previous reduction block
                            a00 = vload(yf, off); a01 = vload(yf, off + 8)
                            a10 = vload(yf, off + Co * min(1, count - 1))
                            a11 = vload(yf, off + Co * min(1, count - 1) + 8)
                            a20 = vload(yf, off + Co * min(2, count - 1))
                            a21 = vload(yf, off + Co * min(2, count - 1) + 8)
                            a30 = vload(yf, off + Co * min(3, count - 1))
                            a31 = vload(yf, off + Co * min(3, count - 1) + 8)
                            a40 = vload(yf, off + Co * min(4, count - 1))
                            a41 = vload(yf, off + Co * min(4, count - 1) + 8)
                            a50 = vload(yf, off + Co * min(5, count - 1))
                            a51 = vload(yf, off + Co * min(5, count - 1) + 8)
                        wo = (blk * K + k0) * TILE_C
                        for k in range(k0, k1):
                            o = offs[np.uint64(k)]
                            w0 = vload(wp, wo)
                            w1 = vload(wp, wo + 8)
                            wo += TILE_C
                            v = vbcast(src, q0 + o)
                            a00 = vfma(v, w0, a00)
                            a01 = vfma(v, w1, a01)
                            v = vbcast(src, q1 + o)
                            a10 = vfma(v, w0, a10)
                            a11 = vfma(v, w1, a11)
                            v = vbcast(src, q2 + o)
                            a20 = vfma(v, w0, a20)
                            a21 = vfma(v, w1, a21)
                            v = vbcast(src, q3 + o)
                            a30 = vfma(v, w0, a30)
                            a31 = vfma(v, w1, a31)
                            v = vbcast(src, q4 + o)
                            a40 = vfma(v, w0, a40)
                            a41 = vfma(v, w1, a41)
                            v = vbcast(src, q5 + o)
                            a50 = vfma(v, w0, a50)
                            a51 = vfma(v, w1, a51)
                        if last:
                            _put_pixel(yf, off, a00, a01, b0, b1, nvalid, act, lo, hi)
                            if count > 1:
                                _put_pixel(yf, off + Co, a10, a11, b0, b1, nvalid, act, lo, hi)
                            if count > 2:
                                _put_pixel(yf, off + 2 * Co, a20, a21, b0, b1, nvalid, act, lo, hi)
                            if count > 3:
                                _put_pixel(yf, off + 3 * Co, a30, a31, b0, b1, nvalid, act, lo, hi)
                            if count > 4:
                                _put_pixel(yf, off + 4 * Co, a40, a41, b0, b1, nvalid, act, lo, hi)
                            if count > 5:
                                _put_pixel(yf, off + 5 * Co, a50, a51, b0, b1, nvalid, act, lo, hi)
                        else:  # partial sums, all 16 lanes (Co is padded when kc < K)
                            vstore(yf, off, a00); vstore(yf, off + 8, a01)
                            if count > 1:
                                vstore(yf, off + Co, a10); vstore(yf, off + Co + 8, a11)
                            if count > 2:
                                vstore(yf, off + 2 * Co, a20); vstore(yf, off + 2 * Co + 8, a21)
                            if count > 3:
                                vstore(yf, off + 3 * Co, a30); vstore(yf, off + 3 * Co + 8, a31)
                            if count > 4:
                                vstore(yf, off + 4 * Co, a40); vstore(yf, off + 4 * Co + 8, a41)
                            if count > 5:
                                vstore(yf, off + 5 * Co, a50); vstore(yf, off + 5 * Co + 8, a51)


def tap_table(KH, KW, Cig, dh, dw):
    """(K, 3) int64 rows (kh*dh, kw*dw, ci) in reduction order kh, kw, ci."""
    kh, kw, ci = np.meshgrid(np.arange(KH) * dh, np.arange(KW) * dw, np.arange(Cig), indexing="ij")
    return np.stack([kh.ravel(), kw.ravel(), ci.ravel()], axis=1).astype(np.int64)


def pack_weight(w, b, groups):
    """HWIO float32 weights -> flat (groups, nblk, KH, KW, Cig, 16) and bias -> (groups*nblk*16,)."""
    KH, KW, Cig, Co = w.shape
    Cog = Co // groups
    nblk = -(-Cog // TILE_C)
    wg = np.zeros((KH, KW, Cig, groups, nblk * TILE_C), dtype=np.float32)
    wg[..., :Cog] = w.reshape(KH, KW, Cig, groups, Cog)
    wp = wg.reshape(KH, KW, Cig, groups, nblk, TILE_C).transpose(3, 4, 0, 1, 2, 5)
    bpad = np.zeros((groups, nblk * TILE_C), dtype=np.float32)
    if b is not None:
        bpad[:, :Cog] = b.reshape(groups, Cog)
    return np.ascontiguousarray(wp).reshape(-1), bpad.reshape(-1)
