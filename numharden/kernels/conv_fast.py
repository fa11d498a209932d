"""Register-blocked float32 convolution kernels (AVX2 + FMA through :mod:`.simd`).

Forward: implicit GEMM over a register tile of 6 output pixels x 16 output channels
(or 12 pixels x 8 channels when a group has at most 8 output channels), 12 ``ymm``
accumulators held across the (kh, kw, ci) reduction; weights are pre-packed as
``(groups, blocks, KH, KW, Cig, tile)`` so each reduction step reads contiguous bytes.
A parallel task is a band of output rows of one image, or several whole images; it
copies the input rows it needs into a zero-padded scratch buffer that stays in cache,
so the micro-kernel never tests bounds (unpadded convolutions read x directly).

Every output element is reduced in the same (kh, kw, ci) order with fused multiply-adds
whatever the tiling or the thread count, then the bias is added and the optional
clamp applied, so results are deterministic and a fused activation is bit-identical to
applying it afterwards.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import vadd, vbcast, vextract, vfma, vload, vmax, vmin, vsplat, vstore, vzero

TILE_P = 6   # output pixels per 6x16 register tile
TILE_C = 16  # output channels per 6x16 register tile (two 8-lane vectors)
NARROW_P = 12  # output pixels per 12x8 register tile (groups of <= 8 output channels)


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


@njit(cache=True, nogil=True)
def _geometry(x_shape, Ho, Wo, sh, sw, pt, pl, KH, KW, dh, dw):
    """(padded, Wp): whether tasks copy into a padded scratch, and its row width."""
    H, W = x_shape[1], x_shape[2]
    padded = pt > 0 or pl > 0 or (Ho - 1) * sh + (KH - 1) * dh + 1 - pt > H \
        or (Wo - 1) * sw + (KW - 1) * dw + 1 - pl > W
    return padded, ((Wo - 1) * sw + (KW - 1) * dw + 1 if padded else W)


@njit(cache=True, nogil=True)
def _offsets(toff, Wp, C):
    """Source offset of each reduction run for rows of width Wp."""
    offs = np.empty(toff.shape[0], dtype=np.int64)
    for k in range(toff.shape[0]):
        offs[k] = toff[k, 0] * Wp * C + toff[k, 1] * C + toff[k, 2]
    return offs


@njit(cache=True, nogil=True, inline="always")
def _task(x, task, nbands, band, imgs, Ho, Wo, sh, sw, pt, pl, KH, dh, padded, Wp, buf, pix):
    """Fill this task's source (buf if padded, else x itself) and pixel offsets (pix);
    return (source, number of pixels, index of the first output pixel)."""
    N, H, W, C = x.shape
    ng = task // nbands
    n0 = ng * imgs
    nimg = min(imgs, N - n0)
    r0 = (task - ng * nbands) * band
    R = min(Ho, r0 + band) - r0
    rows = (R - 1) * sh + (KH - 1) * dh + 1
    if padded:
        src = buf[:nimg * rows * Wp * C]
        _fill(x, n0, nimg, r0 * sh - pt, rows, pl, Wp, src)
        origin = 0
        img = rows * Wp * C
    else:
        src = x.reshape(-1)
        img = H * W * C
        origin = n0 * img + r0 * sh * W * C
    npx = nimg * R * Wo
    t = 0
    for i in range(nimg):
        for r in range(R):
            for c in range(Wo):
                pix[t] = origin + i * img + (r * sh * Wp + c * sw) * C
                t += 1
    for t in range(npx, npx + NARROW_P):  # tail tiles recompute the last pixel
        pix[t] = pix[npx - 1]
    return src, npx, (n0 * Ho + r0) * Wo


@njit(cache=True, nogil=True, inline="always")
def _step16(src, o, q0, q1, q2, q3, q4, q5, wp, wo,
            a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51):
    """One reduction step of a 6x16 tile: 2 weight vectors x 6 broadcast inputs."""
    w0 = vload(wp, wo)
    w1 = vload(wp, wo + 8)
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
    return a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51


@njit(cache=True, nogil=True, inline="always")
def _step8(src, o, q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, w,
           a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11):
    """One reduction step of a 12x8 tile: 1 weight vector x 12 broadcast inputs."""
    return (vfma(vbcast(src, q0 + o), w, a0), vfma(vbcast(src, q1 + o), w, a1),
            vfma(vbcast(src, q2 + o), w, a2), vfma(vbcast(src, q3 + o), w, a3),
            vfma(vbcast(src, q4 + o), w, a4), vfma(vbcast(src, q5 + o), w, a5),
            vfma(vbcast(src, q6 + o), w, a6), vfma(vbcast(src, q7 + o), w, a7),
            vfma(vbcast(src, q8 + o), w, a8), vfma(vbcast(src, q9 + o), w, a9),
            vfma(vbcast(src, q10 + o), w, a10), vfma(vbcast(src, q11 + o), w, a11))


@njit(cache=True, nogil=True, inline="always")
def _tile16(src, pix, t0, go, offs, L, k0, k1, wp, wo, yf, off, Co, count, first, last, nvalid,
            b0, b1, act, lo, hi, tmp):
    """6 pixels (source offsets pix[t0:t0+6] + go) x 16 channels; reduction over the
    runs [k0, k1) of L contiguous input channels each (offsets in offs)."""
    q0 = pix[t0] + go; q1 = pix[t0 + 1] + go; q2 = pix[t0 + 2] + go
    q3 = pix[t0 + 3] + go; q4 = pix[t0 + 4] + go; q5 = pix[t0 + 5] + go
    if first:
        a00 = vzero(); a01 = vzero(); a10 = vzero(); a11 = vzero()
        a20 = vzero(); a21 = vzero(); a30 = vzero(); a31 = vzero()
        a40 = vzero(); a41 = vzero(); a50 = vzero(); a51 = vzero()
    else:  # resume the partial sums parked in y by the previous reduction block
        a00 = vload(yf, off); a01 = vload(yf, off + 8)
        e = off + Co * min(1, count - 1)
        a10 = vload(yf, e); a11 = vload(yf, e + 8)
        e = off + Co * min(2, count - 1)
        a20 = vload(yf, e); a21 = vload(yf, e + 8)
        e = off + Co * min(3, count - 1)
        a30 = vload(yf, e); a31 = vload(yf, e + 8)
        e = off + Co * min(4, count - 1)
        a40 = vload(yf, e); a41 = vload(yf, e + 8)
        e = off + Co * min(5, count - 1)
        a50 = vload(yf, e); a51 = vload(yf, e + 8)
    if L == 1:  # one reduction step per run: a flat loop keeps the offsets in registers
        for k in range(k0, k1):
            a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51 = _step16(
                src, offs[np.uint64(k)], q0, q1, q2, q3, q4, q5, wp, wo,
                a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51)
            wo += TILE_C
    else:
        for k in range(k0, k1):
            o0 = offs[np.uint64(k)]
            for o in range(o0, o0 + L):
                a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51 = _step16(
                    src, o, q0, q1, q2, q3, q4, q5, wp, wo,
                    a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51)
                wo += TILE_C
    if last:
        # Co < 16 channels fill whole rows of y: write full vectors, in ascending pixel
        # order, to tmp (each pixel overwrites the previous one's spare lanes), then
        # copy the tile's count*Co contiguous outputs.
        compact = nvalid == Co and Co < TILE_C
        dst = tmp if compact else yf
        d = 0 if compact else off
        nv = TILE_C if compact else nvalid
        _put_pixel(dst, d, a00, a01, b0, b1, nv, act, lo, hi)
        if count > 1:
            _put_pixel(dst, d + Co, a10, a11, b0, b1, nv, act, lo, hi)
        if count > 2:
            _put_pixel(dst, d + 2 * Co, a20, a21, b0, b1, nv, act, lo, hi)
        if count > 3:
            _put_pixel(dst, d + 3 * Co, a30, a31, b0, b1, nv, act, lo, hi)
        if count > 4:
            _put_pixel(dst, d + 4 * Co, a40, a41, b0, b1, nv, act, lo, hi)
        if count > 5:
            _put_pixel(dst, d + 5 * Co, a50, a51, b0, b1, nv, act, lo, hi)
        if compact:
            yf[off:off + count * Co] = tmp[:count * Co]
    else:  # partial sums, all 16 lanes (planned only when Co/groups % 16 == 0)
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


@njit(cache=True, nogil=True, inline="always")
def _tile8(src, pix, t0, go, offs, L, wp, wo, yf, off, Co, count, nvalid, b, act, lo, hi, tmp):
    """12 pixels (source offsets pix[t0:t0+12] + go) x 8 channels, the whole reduction."""
    q0 = pix[t0] + go; q1 = pix[t0 + 1] + go; q2 = pix[t0 + 2] + go
    q3 = pix[t0 + 3] + go; q4 = pix[t0 + 4] + go; q5 = pix[t0 + 5] + go
    q6 = pix[t0 + 6] + go; q7 = pix[t0 + 7] + go; q8 = pix[t0 + 8] + go
    q9 = pix[t0 + 9] + go; q10 = pix[t0 + 10] + go; q11 = pix[t0 + 11] + go
    a0 = vzero(); a1 = vzero(); a2 = vzero(); a3 = vzero(); a4 = vzero(); a5 = vzero()
    a6 = vzero(); a7 = vzero(); a8 = vzero(); a9 = vzero(); a10 = vzero(); a11 = vzero()
    if L == 1:  # see _tile16
        for k in range(offs.shape[0]):
            a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 = _step8(
                src, offs[np.uint64(k)], q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11,
                vload(wp, wo), a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11)
            wo += 8
    else:
        for k in range(offs.shape[0]):
            o0 = offs[np.uint64(k)]
            for o in range(o0, o0 + L):
                a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 = _step8(
                    src, o, q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11,
                    vload(wp, wo), a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11)
                wo += 8
    compact = nvalid == Co and Co < 8  # see _tile16
    dst = tmp if compact else yf
    d = 0 if compact else off
    nv = 8 if compact else nvalid
    _put(dst, d, vadd(a0, b), nv, act, lo, hi)
    if count > 1:
        _put(dst, d + Co, vadd(a1, b), nv, act, lo, hi)
    if count > 2:
        _put(dst, d + 2 * Co, vadd(a2, b), nv, act, lo, hi)
    if count > 3:
        _put(dst, d + 3 * Co, vadd(a3, b), nv, act, lo, hi)
    if count > 4:
        _put(dst, d + 4 * Co, vadd(a4, b), nv, act, lo, hi)
    if count > 5:
        _put(dst, d + 5 * Co, vadd(a5, b), nv, act, lo, hi)
    if count > 6:
        _put(dst, d + 6 * Co, vadd(a6, b), nv, act, lo, hi)
    if count > 7:
        _put(dst, d + 7 * Co, vadd(a7, b), nv, act, lo, hi)
    if count > 8:
        _put(dst, d + 8 * Co, vadd(a8, b), nv, act, lo, hi)
    if count > 9:
        _put(dst, d + 9 * Co, vadd(a9, b), nv, act, lo, hi)
    if count > 10:
        _put(dst, d + 10 * Co, vadd(a10, b), nv, act, lo, hi)
    if count > 11:
        _put(dst, d + 11 * Co, vadd(a11, b), nv, act, lo, hi)
    if compact:
        yf[off:off + count * Co] = tmp[:count * Co]


@njit(cache=True, nogil=True)
def _run_task(src, pix, tmp, npx, y0, offs, L, T, K, wp, bp, yf, Co, Cig, Cog, groups, nblk,
              tile, kc, act, lo, hi):
    """All register tiles of one task (its pixels x every output channel block)."""
    for g in range(groups):
        for cb in range(nblk):
            nvalid = min(tile, Cog - cb * tile)
            blk = g * nblk + cb
            c0 = g * Cog + cb * tile
            if tile == 8:
                b = vload(bp, blk * 8)
                for t0 in range(0, npx, NARROW_P):
                    _tile8(src, pix, t0, g * Cig, offs, L, wp, blk * K * 8,
                           yf, (y0 + t0) * Co + c0, Co, min(NARROW_P, npx - t0), nvalid,
                           b, act, lo, hi, tmp)
                continue
            b0 = vload(bp, blk * TILE_C)
            b1 = vload(bp, blk * TILE_C + 8)
            for k0 in range(0, T, kc):
                k1 = min(T, k0 + kc)
                for t0 in range(0, npx, TILE_P):
                    _tile16(src, pix, t0, g * Cig, offs, L, k0, k1, wp,
                            (blk * K + k0 * L) * TILE_C, yf, (y0 + t0) * Co + c0, Co,
                            min(TILE_P, npx - t0), k0 == 0, k1 == T, nvalid, b0, b1,
                            act, lo, hi, tmp)



@njit(cache=True, nogil=True, parallel=True)
def conv_fwd(x, wp, bp, toff, L, y, sh, sw, pt, pl, KH, KW, dh, dw, groups, band, imgs, kc,
             tile, act, lo, hi, workers):
    """y = clamp(conv(x, w) + b), float32 NHWC; wp, bp from pack_weight, toff from tap_table.

    A parallel task is ``imgs`` images (then ``band == Ho``) or one band of ``band``
    output rows. ``tile`` is 16 (6x16 tiles) or 8 (12x8 tiles, needs Co/groups <= 8).
    The reduction is toff.shape[0] runs of L contiguous input channels (see tap_table);
    with tile 16 it runs in blocks of ``kc`` runs (``kc`` < all needs
    ``Co/groups % 16 == 0``: partial sums are parked in y). Tasks are dealt to
    ``workers`` contiguous chunks, each with its scratch allocated once per call.
    """
    N, C = x.shape[0], x.shape[3]
    Ho, Wo, Co = y.shape[1], y.shape[2], y.shape[3]
    Cig = C // groups
    Cog = Co // groups
    T = toff.shape[0]
    K = T * L
    nblk = (Cog + tile - 1) // tile
    nbands = (Ho + band - 1) // band
    ngroups = (N + imgs - 1) // imgs
    yf = y.reshape(-1)
    padded, Wp = _geometry(x.shape, Ho, Wo, sh, sw, pt, pl, KH, KW, dh, dw)
    offs = _offsets(toff, Wp, C)
    ntasks = ngroups * nbands
    workers = min(workers, ntasks)
    # scratch per worker, allocated once per call (not per task: no page faults in tasks)
    bufs = np.empty((workers, imgs * ((band - 1) * sh + (KH - 1) * dh + 1) * Wp * C
                     if padded else 1), dtype=np.float32)
    pixs = np.empty((workers, imgs * band * Wo + NARROW_P), dtype=np.int64)
    tmps = np.empty((workers, NARROW_P * 8 + TILE_P * TILE_C), dtype=np.float32)
    for wk in prange(workers):
        pix = pixs[wk]
        tmp = tmps[wk]
        for task in range(wk * ntasks // workers, (wk + 1) * ntasks // workers):
            src, npx, y0 = _task(x, task, nbands, band, imgs, Ho, Wo, sh, sw, pt, pl, KH, dh,
                                 padded, Wp, bufs[wk], pix)
            _run_task(src, pix, tmp, npx, y0, offs, L, T, K, wp, bp, yf, Co, Cig, Cog, groups,
                      nblk, tile, kc, act, lo, hi)

RUN_MIN = 8  # input channels per group from which a run spans a whole tap


def tap_table(KH, KW, Cig, dh, dw, min_run=RUN_MIN):
    """Reduction runs in order (kh, kw, ci): ((T, 3) int64 rows (kh*dh, kw*dw, ci0), L).

    With at least RUN_MIN channels per group a run is one tap (L = Cig contiguous
    channels, the inner loop of the micro-kernel); with fewer, every (kh, kw, ci) is a
    run of L = 1, so short channel loops do not cost loop overhead per tap.
    ``min_run=None`` always gives runs of 1 (one row per reduction step).
    """
    L = Cig if min_run is not None and Cig >= min_run else 1
    kh, kw, ci = np.meshgrid(np.arange(KH) * dh, np.arange(KW) * dw, np.arange(0, Cig, L),
                             indexing="ij")
    return np.stack([kh.ravel(), kw.ravel(), ci.ravel()], axis=1).astype(np.int64), L


def pack_weight(w, b, groups, tile=TILE_C):
    """HWIO float32 weights -> flat (groups, nblk, KH, KW, Cig, tile);
    bias -> (groups * nblk * tile,), zero-padded."""
    KH, KW, Cig, Co = w.shape
    Cog = Co // groups
    nblk = -(-Cog // tile)
    wg = np.zeros((KH, KW, Cig, groups, nblk * tile), dtype=np.float32)
    wg[..., :Cog] = w.reshape(KH, KW, Cig, groups, Cog)
    wp = wg.reshape(KH, KW, Cig, groups, nblk, tile).transpose(3, 4, 0, 1, 2, 5)
    bpad = np.zeros((groups, nblk * tile), dtype=np.float32)
    if b is not None:
        bpad[:, :Cog] = b.reshape(groups, Cog)
    return np.ascontiguousarray(wp).reshape(-1), bpad.reshape(-1)
