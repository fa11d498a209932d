"""Tiling and packing for the register-blocked convolution of :mod:`.conv_fast`.

``tile_table`` groups output pixels by the kernel taps that fall inside the input, so
a register tile reduces over exactly its pixels' valid taps (padding is skipped, as in
PyTorch); ``pack_weight`` lays out HWIO weights in 16-channel blocks.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TILE_P = 6   # output pixels per 6x16 register tile
TILE_C = 16  # output channels per 6x16 register tile (two 8-lane vectors)


@njit(cache=True, nogil=True, inline="always")
def tap_range(o, s, pad, k, d, size):
    """Taps [k0, k1) of output position o whose input index lies in [0, size)."""
    start = o * s - pad
    k0 = 0
    while k0 < k and start + k0 * d < 0:
        k0 += 1
    k1 = k
    while k1 > k0 and start + (k1 - 1) * d >= size:
        k1 -= 1
    return k0, k1


@njit(cache=True, nogil=True)
def _classes(n_out, s, pad, k, d, size):
    """Group output positions by their valid tap range: (first position of each class,
    class of each position, tap ranges (n_classes, 2)). Positions whose window lies
    inside the input share one class; each border position gets its own."""
    cls = np.empty(n_out, dtype=np.int64)
    rng = np.empty((n_out + 1, 2), dtype=np.int64)
    interior = -1
    m = 0
    for o in range(n_out):
        k0, k1 = tap_range(o, s, pad, k, d, size)
        if k0 == 0 and k1 == k:
            if interior < 0:
                interior = m
                rng[m, 0] = 0
                rng[m, 1] = k
                m += 1
            cls[o] = interior
        else:
            rng[m, 0] = k0
            rng[m, 1] = k1
            cls[o] = m
            m += 1
    return cls, rng[:m].copy()


@njit(cache=True, nogil=True)
def tile_table(G, Ho, Wo, H, W, KH, KW, sh, sw, pt, pl, dh, dw, P):
    """Tiles of at most P output pixels of a group of G images and the taps they use.

    Pixels with the same valid kernel rows and columns (the interior, each border row
    and column strip, each corner) are tiled together, across the G images, so a tile
    reduces over exactly its pixels' valid taps. Returns pix (T, P) int64 pixel indices
    (i*Ho + oh)*Wo + ow (a short tile repeats its last pixel), count (T,), taps
    (T, 4) = kh0, kh1, kw0, kw1, and succ (T, P): the tile that writes pixel pix + 1 if it
    comes later in the same block, else -1 (a narrow store may then spill into it).
    """
    rcls, rrng = _classes(Ho, sh, pt, KH, dh, H)
    ccls, crng = _classes(Wo, sw, pl, KW, dw, W)
    cap = G * Ho * Wo + rrng.shape[0] * crng.shape[0]
    pix = np.empty((cap, P), dtype=np.int64)
    count = np.zeros(cap, dtype=np.int64)
    taps = np.empty((cap, 4), dtype=np.int64)
    succ = np.full((cap, P), -1, dtype=np.int64)
    T = 0
    for a in range(rrng.shape[0]):
        for b in range(crng.shape[0]):
            n = 0
            prev_t = -1
            prev_p = 0
            for i in range(G):
                for r in range(Ho):
                    if rcls[r] != a:
                        continue
                    for c in range(Wo):
                        if ccls[c] != b:
                            continue
                        if n == 0:
                            taps[T, 0] = rrng[a, 0]
                            taps[T, 1] = rrng[a, 1]
                            taps[T, 2] = crng[b, 0]
                            taps[T, 3] = crng[b, 1]
                        q = (i * Ho + r) * Wo + c
                        if prev_t >= 0 and pix[prev_t, prev_p] + 1 == q:
                            succ[prev_t, prev_p] = T
                        pix[T, n] = q
                        prev_t = T
                        prev_p = n
                        n += 1
                        if n == P:
                            count[T] = n
                            T += 1
                            n = 0
            if n:
                count[T] = n
                T += 1
    for t in range(T):
        for p in range(count[t], P):
            pix[t, p] = pix[t, count[t] - 1]
    return pix[:T].copy(), count[:T].copy(), taps[:T].copy(), succ[:T].copy()


@njit(cache=True, nogil=True)
def source_offsets(pix, Ho, Wo, img, sh, sw, Wp, C):
    """Offset in a group's source of each tile pixel (i*Ho + oh)*Wo + ow."""
    qs = np.empty(pix.shape, dtype=np.int64)
    for t in range(pix.shape[0]):
        for p in range(pix.shape[1]):
            i = pix[t, p] // (Ho * Wo)
            r = pix[t, p] // Wo - i * Ho
            c = pix[t, p] - (i * Ho + r) * Wo
            qs[t, p] = i * img + (r * sh * Wp + c * sw) * C
    return qs


@njit(cache=True, nogil=True)
def flat_steps(taps, KW, Cig, rowstep, colstep):
    """For tiles that run one flat loop: each tile's class (consecutive tiles with the
    same tap ranges) and per class the source and weight offset of every valid
    (kh, kw, ci) step, in that order."""
    T = taps.shape[0]
    cls = np.empty(T, dtype=np.int64)
    first = np.empty(T, dtype=np.int64)
    m = -1
    for t in range(T):
        if t == 0 or taps[t, 0] != taps[t - 1, 0] or taps[t, 1] != taps[t - 1, 1] \
                or taps[t, 2] != taps[t - 1, 2] or taps[t, 3] != taps[t - 1, 3]:
            m += 1
            first[m] = t
        cls[t] = m
    kmax = 0
    for c in range(m + 1):
        t = first[c]
        kmax = max(kmax, (taps[t, 1] - taps[t, 0]) * (taps[t, 3] - taps[t, 2]) * Cig)
    n = np.zeros(m + 1, dtype=np.int64)
    so = np.empty((m + 1, max(kmax, 1)), dtype=np.int64)
    sw = np.empty((m + 1, max(kmax, 1)), dtype=np.int64)
    for c in range(m + 1):
        t = first[c]
        for kh in range(taps[t, 0], taps[t, 1]):
            for kw in range(taps[t, 2], taps[t, 3]):
                for ci in range(Cig):
                    so[c, n[c]] = kh * rowstep + kw * colstep + ci
                    sw[c, n[c]] = ((kh * KW + kw) * Cig + ci) * TILE_C
                    n[c] += 1
    return cls, n, so, sw


def pack_weight(w, b, groups, tile=TILE_C):
    """HWIO float32 weights -> flat (groups, nblk, KH, KW, Cig, tile);
    bias -> (groups * nblk * tile,), zero-padded. ``tile`` is 16 (8-lane kernels) or
    32 (the AVX-512 kernel)."""
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


def tap_table(KH, KW, Cig, dh, dw):
    """(K, 3) int64 rows (kh*dh, kw*dw, ci), one per reduction step in (kh, kw, ci) order."""
    kh, kw, ci = np.meshgrid(np.arange(KH) * dh, np.arange(KW) * dw, np.arange(Cig),
                             indexing="ij")
    return np.stack([kh.ravel(), kw.ravel(), ci.ravel()], axis=1).astype(np.int64)
