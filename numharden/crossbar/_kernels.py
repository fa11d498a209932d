"""Private Numba kernels of the crossbar model (loop twins in tests/naive_crossbar.py).

Random normals are counter based: cell ``j`` of a stream with 64-bit ``key`` gets
``normal(key, j)`` (SplitMix64 finaliser + Box-Muller), so a draw is the same for any
thread count or chunking and a skipped (stuck, protected) cell shifts nothing.

``par`` (float64): g_min, g_max, sigma, ln((t+t0)/t0), nu mean, nu std, read sigma,
sqrt(ln((t+t0+t_read)/(2 t_read))).  ``ip`` (int64): programming (0 none, 1 gaussian,
2 lognormal, 3 additive, 4 pcm), drift (0 none, 1 generic, 2 pcm), mapping
(0 differential, 1 offset), slices, cell bits (0 analog), keep cells (0/1).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
PROG_C = (0.26348, 1.9650, -1.1731)


@njit(cache=True, nogil=True, inline="always")
def _mix(z):
    """SplitMix64 finaliser of a uint64."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _normal(key, j):
    """Standard normal number ``j`` of stream ``key`` (Box-Muller on two 53-bit uniforms)."""
    h1 = _mix(key + (np.uint64(j) + np.uint64(1)) * GOLDEN)
    h2 = _mix(h1 ^ np.uint64(0xD1B54A32D192ED03))
    u1 = (float(h1 >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)
    u2 = float(h2 >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True, nogil=True)
def _normals(key, n):
    """``normal(key, j)`` for j < n (tests and statistics)."""
    out = np.empty(n, np.float64)
    for j in range(n):
        out[j] = _normal(key, j)
    return out


@njit(cache=True, nogil=True, inline="always")
def _cell(c, off, span, a, k, mapping, b):
    """(level, levels, multiplier, sign) of slice k of array a for the value c."""
    sign = 1.0 if (mapping == 1 or a == 0) else -1.0
    m = c + off if mapping == 1 else max(sign * c, 0.0)
    if b == 0:
        return m, span, 1.0, sign
    d = float((np.int64(m) >> np.int64(b * k)) & np.int64((1 << b) - 1))
    return d, float((1 << b) - 1), float(1 << (b * k)), sign


@njit(cache=True, nogil=True, inline="always")
def _program_cell(gt, g_max, sigma, prog, z):
    if prog == 1:
        return gt * (1.0 + sigma * z)
    if prog == 2:
        return gt * math.exp(sigma * z)
    if prog == 3:
        return gt + sigma * g_max * z
    if prog == 4:
        x = gt / g_max
        s = (PROG_C[0] + PROG_C[1] * x + PROG_C[2] * x * x) * g_max / 25.0
        return max(gt + sigma * s * z, 0.0)
    return gt


@njit(cache=True, nogil=True, parallel=True)
def _program(c, off, span, prot, rowlen, stuck_idx, stuck_kind, par, ip, keys,
             rec0, rect, gd, sd):
    """Program, drift and stick every cell; reconstruct each weight at t=0 and at t."""
    g_min, g_max, sigma, lnt, nu_m, nu_s, rsig, pread = (
        par[0], par[1], par[2], par[3], par[4], par[5], par[6], par[7])
    prog, drift, mapping, S, b, keep = ip[0], ip[1], ip[2], ip[3], ip[4], ip[5]
    A = 2 if mapping == 0 else 1
    dg = g_max - g_min
    rows = c.shape[0] // rowlen
    for r in prange(rows):
        p = np.searchsorted(stuck_idx, r * rowlen * A * S)
        for i in range(r * rowlen, (r + 1) * rowlen):
            if prot[i]:
                rec0[i] = c[i]
                rect[i] = c[i]
                continue
            s0 = 0.0
            st = 0.0
            for a in range(A):
                for k in range(S):
                    j = (i * A + a) * S + k
                    lev, lvmax, mult, sign = _cell(c[i], off[r], span[r], a, k, mapping, b)
                    gt = g_min + dg * lev / lvmax
                    sread = 0.0
                    if p < stuck_idx.shape[0] and stuck_idx[p] == j:
                        gp = g_max if stuck_kind[p] == 0 else g_min
                        g = gp
                        p += 1
                    else:
                        gp = _program_cell(gt, g_max, sigma, prog, _normal(keys[0], j))
                        g = gp
                        if drift == 1:
                            nu = nu_m + nu_s * _normal(keys[1], j)
                            g = gp * math.exp(-nu * lnt)
                        elif drift == 2:
                            gr = max(abs(gt / g_max), 1e-7)
                            mu = min(max(-0.0155 * math.log(gr) + 0.0244, 0.049), 0.1)
                            sdn = min(max(-0.0125 * math.log(gr) - 0.0059, 0.008), 0.045)
                            nu = abs(mu + sdn * _normal(keys[1], j))
                            g = gp * math.exp(-nu * lnt)
                        if prog == 4:
                            qs = min(0.0088 / max((abs(gp) / g_max) ** 0.65, 1e-3), 0.2)
                            sread = abs(g) * rsig * qs * pread
                        else:
                            sread = abs(g) * rsig
                    s0 += sign * mult * (lev + (gp - gt) * lvmax / dg)
                    st += sign * mult * (lev + (g - gt) * lvmax / dg)
                    if keep:
                        gd[j] = g
                        sd[j] = sread
            if mapping == 1:
                s0 -= off[r]
                st -= off[r]
            rec0[i] = s0
            rect[i] = st


@njit(cache=True, nogil=True, parallel=True)
def _read(c, off, span, prot, rowlen, gd, sd, par, ip, key, out):
    """Reconstruct every weight from kept cells plus fresh read noise of stream ``key``."""
    g_min, g_max = par[0], par[1]
    prog, mapping, S, b = ip[0], ip[2], ip[3], ip[4]
    A = 2 if mapping == 0 else 1
    dg = g_max - g_min
    rows = c.shape[0] // rowlen
    for r in prange(rows):
        for i in range(r * rowlen, (r + 1) * rowlen):
            if prot[i]:
                out[i] = c[i]
                continue
            acc = 0.0
            for a in range(A):
                for k in range(S):
                    j = (i * A + a) * S + k
                    lev, lvmax, mult, sign = _cell(c[i], off[r], span[r], a, k, mapping, b)
                    gt = g_min + dg * lev / lvmax
                    g = gd[j]
                    if sd[j] > 0.0:
                        g = g + sd[j] * _normal(key, j)
                        if prog == 4:
                            g = max(g, 0.0)
                    acc += sign * mult * (lev + (g - gt) * lvmax / dg)
            out[i] = acc - off[r] if mapping == 1 else acc
