"""Register-blocked float32 convolution kernels (AVX2 + FMA through :mod:`.simd`).

Forward: implicit GEMM over a register tile of 6 output pixels x 16 output channels,
12 ``ymm`` accumulators held across the (kh, kw, ci) reduction. Weights are pre-packed
as ``(groups, blocks, KH, KW, Cig, 16)`` so each reduction step reads 64 contiguous
bytes. (A 12-pixel x 8-channel tile for narrow layers was tried: with twelve source
pointers LLVM spills in the hot loop and it ran slower than wasting lanes of this one.)

Tiles come from a table built once per call (``tile_table``): interior pixels, whose
windows lie inside the input, are grouped row-major across rows; pixels of the border
ring are grouped by row (top/bottom) or by column (left/right) so that a tile can skip
the kernel rows or columns that fall in the padding for all its pixels -- as PyTorch
does, which also keeps a non-finite weight at a padded tap out of the result. A
parallel task is some images (or, for small batches, a range of tiles of one image);
it copies the input it needs into a zero-padded scratch buffer that stays in cache, so
the micro-kernel never tests bounds (unpadded convolutions read x directly).

The common case of CNN layers (one group, whole 16-channel blocks, long kernel rows)
runs in a stripped twin of the tile loop whose epilogue is a separate function: with
the epilogue's operands live across it, LLVM starved the hot loop of registers. On
CPUs with AVX-512F, such layers with whole 32-channel blocks use 6 x 32 tiles of 16-lane
vectors (:mod:`.simd16`): each broadcast feeds twice the lanes (4-8 % on 256-512
channels). Every variant gives the same bits.

Every output element is reduced over its valid taps in (kh, kw, ci) order with fused
multiply-adds whatever the tiling or the thread count; then the bias, the optional
residual and the optional clamp are applied, so results are deterministic and fusing
is bit-identical to applying those ops afterwards.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv_tiles import TILE_C, TILE_P, flat_steps, source_offsets
from .simd import vadd, vbcast, vfma, vload, vmax, vmin, vsplat, vstore, vzero
from .simd16 import wbcast, wfma, wload, wstore, wzero

FLAT_BELOW = 32  # kernel rows shorter than this (KW * Cig steps) run as one flat loop
WIDE_C = 32  # output channels of the AVX-512 tile of _task32_dense (two 16-lane vectors)
GENERAL, DENSE, WIDE = 0, 1, 2  # conv_fwd's tile loop: _task16, _task16_dense, _task32_dense


@njit(cache=True, nogil=True, inline="always")
def _finish(v, b, r, has_res, act, lo, hi):
    """Epilogue of one output vector: + bias (+ residual r), then clamp if act."""
    v = vadd(v, b)
    if has_res:
        v = vadd(v, r)
    if act:
        v = vmin(vmax(v, vsplat(lo)), vsplat(hi))
    return v


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


@njit(cache=True, nogil=True)
def _task16(src, t0, t1, qs, pix, count, taps, succ, yb, K, KH, KW, Cig, C, rowstep, colstep, ckw,
            flat, fcls, fn, fo, fw, wp, bp, yf, Co, Cog, groups, res, has_res, act, lo, hi):
    """Tiles [t0, t1) of a group of images whose first output pixel is yb; tile pixels
    read src at qs + the group offset, 6x16 register tiles.

    The tile loops are written out here rather than in helper functions: numba
    increfs/decrefs every array passed to a call, even an inlined one, which costs more
    than a short tile's arithmetic. Partial tiles go through tmp for the epilogue."""
    tile = TILE_C
    nblk = (Cog + tile - 1) // tile
    tmp = np.empty(TILE_P * TILE_C, dtype=np.float32)
    for g in range(groups):
        for cb in range(nblk):
            nvalid = min(tile, Cog - cb * tile)
            blk = g * nblk + cb
            c0 = g * Cog + cb * tile
            wb = blk * K * tile
            sb = g * Cig
            for t in range(t0, t1):
                kw0 = taps[t, 2]
                kw1 = taps[t, 3]
                q0 = sb + qs[t, 0]; q1 = sb + qs[t, 1]; q2 = sb + qs[t, 2]
                q3 = sb + qs[t, 3]; q4 = sb + qs[t, 4]; q5 = sb + qs[t, 5]
                a00 = vzero(); a01 = vzero(); a10 = vzero(); a11 = vzero()
                a20 = vzero(); a21 = vzero(); a30 = vzero(); a31 = vzero()
                a40 = vzero(); a41 = vzero(); a50 = vzero(); a51 = vzero()
                if flat:  # short kernel rows: one loop over the class's valid steps
                    c = fcls[t]
                    if fn[c] == K:  # all taps: the weights are contiguous
                        for k in range(K):
                            (a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50,
                             a51) = _step16(src, fo[c, k], q0, q1, q2, q3, q4, q5, wp,
                                            wb + k * TILE_C, a00, a01, a10, a11, a20, a21,
                                            a30, a31, a40, a41, a50, a51)
                    else:
                        for k in range(fn[c]):
                            (a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50,
                             a51) = _step16(src, fo[c, k], q0, q1, q2, q3, q4, q5, wp,
                                            wb + fw[c, k], a00, a01, a10, a11, a20, a21,
                                            a30, a31, a40, a41, a50, a51)
                else:
                    for kh in range(taps[t, 0], taps[t, 1]):
                        ob = kh * rowstep
                        wk = wb + kh * KW * Cig * TILE_C
                        if ckw:  # (kw, ci) contiguous (dilation 1, one group): one run
                            wo = wk + kw0 * Cig * TILE_C
                            for o in range(ob + kw0 * C, ob + kw1 * C):
                                (a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50,
                                 a51) = _step16(src, o, q0, q1, q2, q3, q4, q5, wp, wo,
                                                a00, a01, a10, a11, a20, a21, a30, a31,
                                                a40, a41, a50, a51)
                                wo += TILE_C
                        else:
                            for kw in range(kw0, kw1):
                                wo = wk + kw * Cig * TILE_C
                                o0 = ob + kw * colstep
                                for o in range(o0, o0 + Cig):
                                    (a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50,
                                     a51) = _step16(src, o, q0, q1, q2, q3, q4, q5, wp, wo,
                                                    a00, a01, a10, a11, a20, a21, a30,
                                                    a31, a40, a41, a50, a51)
                                    wo += TILE_C
                if count[t] == TILE_P and nvalid == TILE_C:  # full tile: store from registers
                    b0 = vload(bp, blk * TILE_C)
                    b1 = vload(bp, blk * TILE_C + 8)
                    e = (yb + pix[t, 0]) * Co + c0
                    r0 = vzero()
                    r1 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                        r1 = vload(res, e + 8)
                    vstore(yf, e, _finish(a00, b0, r0, has_res, act, lo, hi))
                    vstore(yf, e + 8, _finish(a01, b1, r1, has_res, act, lo, hi))
                    e = (yb + pix[t, 1]) * Co + c0
                    r0 = vzero()
                    r1 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                        r1 = vload(res, e + 8)
                    vstore(yf, e, _finish(a10, b0, r0, has_res, act, lo, hi))
                    vstore(yf, e + 8, _finish(a11, b1, r1, has_res, act, lo, hi))
                    e = (yb + pix[t, 2]) * Co + c0
                    r0 = vzero()
                    r1 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                        r1 = vload(res, e + 8)
                    vstore(yf, e, _finish(a20, b0, r0, has_res, act, lo, hi))
                    vstore(yf, e + 8, _finish(a21, b1, r1, has_res, act, lo, hi))
                    e = (yb + pix[t, 3]) * Co + c0
                    r0 = vzero()
                    r1 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                        r1 = vload(res, e + 8)
                    vstore(yf, e, _finish(a30, b0, r0, has_res, act, lo, hi))
                    vstore(yf, e + 8, _finish(a31, b1, r1, has_res, act, lo, hi))
                    e = (yb + pix[t, 4]) * Co + c0
                    r0 = vzero()
                    r1 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                        r1 = vload(res, e + 8)
                    vstore(yf, e, _finish(a40, b0, r0, has_res, act, lo, hi))
                    vstore(yf, e + 8, _finish(a41, b1, r1, has_res, act, lo, hi))
                    e = (yb + pix[t, 5]) * Co + c0
                    r0 = vzero()
                    r1 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                        r1 = vload(res, e + 8)
                    vstore(yf, e, _finish(a50, b0, r0, has_res, act, lo, hi))
                    vstore(yf, e + 8, _finish(a51, b1, r1, has_res, act, lo, hi))
                    continue
                if count[t] == TILE_P and nvalid == Co and 4 <= Co < 8 \
                        and succ[t, 0] == t and succ[t, 1] == t and succ[t, 2] == t \
                        and succ[t, 3] == t and succ[t, 4] == t and t <= succ[t, 5] < t1:
                    # narrow full tile of consecutive pixels: 8-lane stores, each spilling
                    # into the next pixel, which is stored right after
                    b0 = vload(bp, blk * TILE_C)
                    e = (yb + pix[t, 0]) * Co + c0
                    r0 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                    vstore(yf, e, _finish(a00, b0, r0, has_res, act, lo, hi))
                    e = (yb + pix[t, 1]) * Co + c0
                    r0 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                    vstore(yf, e, _finish(a10, b0, r0, has_res, act, lo, hi))
                    e = (yb + pix[t, 2]) * Co + c0
                    r0 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                    vstore(yf, e, _finish(a20, b0, r0, has_res, act, lo, hi))
                    e = (yb + pix[t, 3]) * Co + c0
                    r0 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                    vstore(yf, e, _finish(a30, b0, r0, has_res, act, lo, hi))
                    e = (yb + pix[t, 4]) * Co + c0
                    r0 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                    vstore(yf, e, _finish(a40, b0, r0, has_res, act, lo, hi))
                    e = (yb + pix[t, 5]) * Co + c0
                    r0 = vzero()
                    if has_res:
                        r0 = vload(res, e)
                    vstore(yf, e, _finish(a50, b0, r0, has_res, act, lo, hi))
                    continue
                vstore(tmp, 0, a00); vstore(tmp, 8, a01); vstore(tmp, 16, a10)
                vstore(tmp, 24, a11); vstore(tmp, 32, a20); vstore(tmp, 40, a21)
                vstore(tmp, 48, a30); vstore(tmp, 56, a31); vstore(tmp, 64, a40)
                vstore(tmp, 72, a41); vstore(tmp, 80, a50); vstore(tmp, 88, a51)
                # epilogue: pixel p's accumulators are tmp[p*tile : (p+1)*tile]
                for p in range(count[t]):
                    off = (yb + pix[t, p]) * Co + c0
                    for h in range(0, nvalid, 8):
                        r = vzero()
                        if has_res:
                            r = vload(res, off + h)
                        v = _finish(vload(tmp, p * tile + h), vload(bp, blk * tile + h), r,
                                    has_res, act, lo, hi)
                        if nvalid - h >= 8:
                            vstore(yf, off + h, v)
                        elif nvalid == Co and nvalid - h + Co >= 8 and succ[t, p] >= t \
                                and succ[t, p] < t1:
                            # narrow output: spill into pixel + 1, written later by us
                            vstore(yf, off + h, v)
                        else:  # channel tail: through memory, not lane extracts
                            vstore(tmp, p * tile + h, v)
                            for lane in range(nvalid - h):
                                yf[off + h + lane] = tmp[p * tile + h + lane]


@njit(cache=True, nogil=True)
def _task16_dense(src, t0, t1, qs, pix, count, taps, yb, KW, Cig, rowstep, wp, bp, yf, Co, K,
                  res, has_res, act, lo, hi):
    """:func:`_task16` for the common case -- one group, unit width dilation, whole
    16-channel blocks, kernel rows of at least ``FLAT_BELOW`` steps -- with everything
    else stripped: the accumulators are stored raw and the epilogue runs afterwards in
    :func:`_epilogue16`, a separate function. Kept apart, LLVM gives the hot loop the
    registers to itself: 10-15 % faster on ResNet layers, and bit-identical (the same
    float32 values meet the same bias, residual and clamp)."""
    nblk = Co // TILE_C
    tmp = np.empty(TILE_P * TILE_C, dtype=np.float32)
    for cb in range(nblk):
        c0 = cb * TILE_C
        wb = cb * K * TILE_C
        for t in range(t0, t1):
            kw0 = taps[t, 2]
            kw1 = taps[t, 3]
            q0 = qs[t, 0]; q1 = qs[t, 1]; q2 = qs[t, 2]
            q3 = qs[t, 3]; q4 = qs[t, 4]; q5 = qs[t, 5]
            a00 = vzero(); a01 = vzero(); a10 = vzero(); a11 = vzero()
            a20 = vzero(); a21 = vzero(); a30 = vzero(); a31 = vzero()
            a40 = vzero(); a41 = vzero(); a50 = vzero(); a51 = vzero()
            for kh in range(taps[t, 0], taps[t, 1]):
                ob = kh * rowstep
                wo = wb + (kh * KW + kw0) * Cig * TILE_C
                for o in range(ob + kw0 * Cig, ob + kw1 * Cig):
                    (a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50,
                     a51) = _step16(src, o, q0, q1, q2, q3, q4, q5, wp, wo,
                                    a00, a01, a10, a11, a20, a21, a30, a31,
                                    a40, a41, a50, a51)
                    wo += TILE_C
            n = count[t]
            if n == TILE_P:
                e = (yb + pix[t, 0]) * Co + c0
                vstore(yf, e, a00); vstore(yf, e + 8, a01)
                e = (yb + pix[t, 1]) * Co + c0
                vstore(yf, e, a10); vstore(yf, e + 8, a11)
                e = (yb + pix[t, 2]) * Co + c0
                vstore(yf, e, a20); vstore(yf, e + 8, a21)
                e = (yb + pix[t, 3]) * Co + c0
                vstore(yf, e, a30); vstore(yf, e + 8, a31)
                e = (yb + pix[t, 4]) * Co + c0
                vstore(yf, e, a40); vstore(yf, e + 8, a41)
                e = (yb + pix[t, 5]) * Co + c0
                vstore(yf, e, a50); vstore(yf, e + 8, a51)
            else:  # short tile: its pixel slots past count repeat the last pixel
                vstore(tmp, 0, a00); vstore(tmp, 8, a01); vstore(tmp, 16, a10)
                vstore(tmp, 24, a11); vstore(tmp, 32, a20); vstore(tmp, 40, a21)
                vstore(tmp, 48, a30); vstore(tmp, 56, a31); vstore(tmp, 64, a40)
                vstore(tmp, 72, a41); vstore(tmp, 80, a50); vstore(tmp, 88, a51)
                for p in range(n):
                    e = (yb + pix[t, p]) * Co + c0
                    vstore(yf, e, vload(tmp, p * TILE_C))
                    vstore(yf, e + 8, vload(tmp, p * TILE_C + 8))
        _epilogue16(yf, res, bp, pix, count, t0, t1, yb, Co, c0, has_res, act, lo, hi)


@njit(cache=True, nogil=True, inline="always")
def _step32(src, o, q0, q1, q2, q3, q4, q5, wp, wo,
            a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51):
    """One reduction step of a 6x32 tile: 2 weight vectors x 6 broadcast inputs (zmm)."""
    w0 = wload(wp, wo)
    w1 = wload(wp, wo + 16)
    v = wbcast(src, q0 + o)
    a00 = wfma(v, w0, a00)
    a01 = wfma(v, w1, a01)
    v = wbcast(src, q1 + o)
    a10 = wfma(v, w0, a10)
    a11 = wfma(v, w1, a11)
    v = wbcast(src, q2 + o)
    a20 = wfma(v, w0, a20)
    a21 = wfma(v, w1, a21)
    v = wbcast(src, q3 + o)
    a30 = wfma(v, w0, a30)
    a31 = wfma(v, w1, a31)
    v = wbcast(src, q4 + o)
    a40 = wfma(v, w0, a40)
    a41 = wfma(v, w1, a41)
    v = wbcast(src, q5 + o)
    a50 = wfma(v, w0, a50)
    a51 = wfma(v, w1, a51)
    return a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51


@njit(cache=True, nogil=True)
def _task32_dense(src, t0, t1, qs, pix, count, taps, yb, KW, Cig, rowstep, wp, bp, yf, Co, K,
                  res, has_res, act, lo, hi):
    """:func:`_task16_dense` with 6 x 32 tiles of 16-lane (AVX-512) vectors, for
    ``Co % 32 == 0``; weights packed in 32-channel blocks. Each output element meets
    the same fused multiply-adds in the same order, so the bits are those of the
    8-lane kernels."""
    nblk = Co // WIDE_C
    tmp = np.empty(TILE_P * WIDE_C, dtype=np.float32)
    for cb in range(nblk):
        c0 = cb * WIDE_C
        wb = cb * K * WIDE_C
        for t in range(t0, t1):
            kw0 = taps[t, 2]
            kw1 = taps[t, 3]
            q0 = qs[t, 0]; q1 = qs[t, 1]; q2 = qs[t, 2]
            q3 = qs[t, 3]; q4 = qs[t, 4]; q5 = qs[t, 5]
            a00 = wzero(); a01 = wzero(); a10 = wzero(); a11 = wzero()
            a20 = wzero(); a21 = wzero(); a30 = wzero(); a31 = wzero()
            a40 = wzero(); a41 = wzero(); a50 = wzero(); a51 = wzero()
            for kh in range(taps[t, 0], taps[t, 1]):
                ob = kh * rowstep
                wo = wb + (kh * KW + kw0) * Cig * WIDE_C
                for o in range(ob + kw0 * Cig, ob + kw1 * Cig):
                    (a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50,
                     a51) = _step32(src, o, q0, q1, q2, q3, q4, q5, wp, wo,
                                    a00, a01, a10, a11, a20, a21, a30, a31,
                                    a40, a41, a50, a51)
                    wo += WIDE_C
            n = count[t]
            if n == TILE_P:
                e = (yb + pix[t, 0]) * Co + c0
                wstore(yf, e, a00); wstore(yf, e + 16, a01)
                e = (yb + pix[t, 1]) * Co + c0
                wstore(yf, e, a10); wstore(yf, e + 16, a11)
                e = (yb + pix[t, 2]) * Co + c0
                wstore(yf, e, a20); wstore(yf, e + 16, a21)
                e = (yb + pix[t, 3]) * Co + c0
                wstore(yf, e, a30); wstore(yf, e + 16, a31)
                e = (yb + pix[t, 4]) * Co + c0
                wstore(yf, e, a40); wstore(yf, e + 16, a41)
                e = (yb + pix[t, 5]) * Co + c0
                wstore(yf, e, a50); wstore(yf, e + 16, a51)
            else:  # short tile: its pixel slots past count repeat the last pixel
                wstore(tmp, 0, a00); wstore(tmp, 16, a01); wstore(tmp, 32, a10)
                wstore(tmp, 48, a11); wstore(tmp, 64, a20); wstore(tmp, 80, a21)
                wstore(tmp, 96, a30); wstore(tmp, 112, a31); wstore(tmp, 128, a40)
                wstore(tmp, 144, a41); wstore(tmp, 160, a50); wstore(tmp, 176, a51)
                for p in range(n):
                    e = (yb + pix[t, p]) * Co + c0
                    wstore(yf, e, wload(tmp, p * WIDE_C))
                    wstore(yf, e + 16, wload(tmp, p * WIDE_C + 16))
        _epilogue16(yf, res, bp, pix, count, t0, t1, yb, Co, c0, has_res, act, lo, hi)
        _epilogue16(yf, res, bp, pix, count, t0, t1, yb, Co, c0 + TILE_C, has_res, act, lo, hi)


@njit(cache=True, nogil=True)
def _epilogue16(yf, res, bp, pix, count, t0, t1, yb, Co, c0, has_res, act, lo, hi):
    """Channels [c0, c0 + 16) of the pixels of tiles [t0, t1), which hold raw sums:
    + bias (+ residual), then clamp if act -- as :func:`_finish` in :func:`_task16`."""
    b0 = vload(bp, c0)
    b1 = vload(bp, c0 + 8)
    for t in range(t0, t1):
        for p in range(count[t]):
            e = (yb + pix[t, p]) * Co + c0
            r0 = vzero()
            r1 = vzero()
            if has_res:
                r0 = vload(res, e)
                r1 = vload(res, e + 8)
            vstore(yf, e, _finish(vload(yf, e), b0, r0, has_res, act, lo, hi))
            vstore(yf, e + 8, _finish(vload(yf, e + 8), b1, r1, has_res, act, lo, hi))


@njit(cache=True, nogil=True, parallel=True)
def conv_fwd(x, wp, bp, y, res, has_res, sh, sw, pt, pl, KH, KW, dh, dw, groups,
             pix, count, taps, succ, pix_last, count_last, taps_last, succ_last, imgs, chunks,
             act, lo, hi, workers, kernel):
    """y = clamp(conv(x, w) + b (+ res)), float32 NHWC.

    ``kernel`` (GENERAL, DENSE or WIDE, chosen by the caller, whose conditions
    ops.conv._kernel states) picks the tile loop; wp, bp from pack_weight (32-channel
    blocks for WIDE, else 16); (pix, count, taps, succ) = tile_table(imgs, ...), and the
    ``_last`` table for the N % imgs images of a last,
    short group (any table when there is none). A parallel task is a group of ``imgs``
    images, or (``imgs == 1``) one of ``chunks`` ranges of an image's tiles. Tasks are
    dealt to ``workers`` contiguous runs, each with its scratch allocated once per call.
    """
    N, H, W, C = x.shape
    Ho, Wo, Co = y.shape[1], y.shape[2], y.shape[3]
    Cig = C // groups
    Cog = Co // groups
    padded = pt > 0 or pl > 0 or (Ho - 1) * sh + (KH - 1) * dh + 1 - pt > H \
        or (Wo - 1) * sw + (KW - 1) * dw + 1 - pl > W
    Wp = (Wo - 1) * sw + (KW - 1) * dw + 1 if padded else W
    Hp = (Ho - 1) * sh + (KH - 1) * dh + 1 if padded else H
    img = Hp * Wp * C
    qs = source_offsets(pix, Ho, Wo, img, sh, sw, Wp, C)
    qs_last = source_offsets(pix_last, Ho, Wo, img, sh, sw, Wp, C)
    ckw = dw == 1 and groups == 1
    K = KH * KW * Cig
    flat = KW * Cig < FLAT_BELOW
    cls, sn, so, sw_ = flat_steps(taps, KW, Cig, dh * Wp * C, dw * C)
    cls_l, sn_l, so_l, sw_l = flat_steps(taps_last, KW, Cig, dh * Wp * C, dw * C)
    yf = y.reshape(-1)
    rf = res.reshape(-1)
    ngroups = (N + imgs - 1) // imgs
    ntasks = ngroups * chunks
    workers = min(workers, ntasks)
    # scratch per worker, allocated once per call (not per task: no page faults in tasks)
    bufs = np.empty((workers, imgs * img if padded else 1), dtype=np.float32)
    for wk in prange(workers):
        for task in range(wk * ntasks // workers, (wk + 1) * ntasks // workers):
            ng = task // chunks
            ch = task - ng * chunks
            n0 = ng * imgs
            nimg = min(imgs, N - n0)
            if padded:
                src = bufs[wk]
                _fill(x, n0, nimg, -pt, Hp, pl, Wp, src)
            else:
                src = x.reshape(-1)[n0 * img:]
            if nimg == imgs:
                tq, tp, tc, tt, ts = qs, pix, count, taps, succ
                fc, fn, fo, fw = cls, sn, so, sw_
            else:
                tq, tp, tc, tt, ts = qs_last, pix_last, count_last, taps_last, succ_last
                fc, fn, fo, fw = cls_l, sn_l, so_l, sw_l
            T = tp.shape[0]
            t0 = ch * T // chunks
            t1 = (ch + 1) * T // chunks
            yb = n0 * Ho * Wo
            if kernel == WIDE:
                _task32_dense(src, t0, t1, tq, tp, tc, tt, yb, KW, Cig, dh * Wp * C, wp, bp, yf,
                              Co, K, rf, has_res, act, lo, hi)
                continue
            if kernel == DENSE:
                _task16_dense(src, t0, t1, tq, tp, tc, tt, yb, KW, Cig, dh * Wp * C, wp, bp, yf,
                              Co, K, rf, has_res, act, lo, hi)
                continue
            _task16(src, t0, t1, tq, tp, tc, tt, ts, yb, K, KH, KW, Cig, C, dh * Wp * C, dw * C,
                    ckw, flat, fc, fn, fo, fw, wp, bp, yf, Co, Cog, groups, rf,
                    has_res, act, lo, hi)
