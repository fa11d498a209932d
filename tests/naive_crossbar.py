"""Slow loop twins of numharden.crossbar._kernels, written on Python ints and floats.

The random stream is recomputed with Python integers masked to 64 bits, and each cell
is mapped, perturbed and recombined with explicit per-case formulas (docs/CROSSBAR.md)
rather than the kernels' shared level/multiplier helper.
"""

from __future__ import annotations

import math

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def normal(key: int, j: int) -> float:
    h1 = mix((key + (j + 1) * GOLDEN) & M64)
    h2 = mix(h1 ^ 0xD1B54A32D192ED03)
    u1 = ((h1 >> 11) + 0.5) / 2.0**53
    u2 = (h2 >> 11) / 2.0**53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def targets(c, off, span, mapping, bits, slices):
    """[(array sign, slice multiplier, level, levels)] of the cells of one value."""
    out = []
    if bits == 0:
        if mapping == 0:
            out += [(1.0, 1.0, max(c, 0.0), span), (-1.0, 1.0, max(-c, 0.0), span)]
        else:
            out += [(1.0, 1.0, c + off, span)]
        return out
    arrays = [(1.0, int(max(c, 0))), (-1.0, int(max(-c, 0)))] if mapping == 0 else [
        (1.0, int(c + off))]
    for sign, m in arrays:
        digits = [(m // 2 ** (bits * k)) % 2**bits for k in range(slices)]
        out += [(sign, float(2 ** (bits * k)), float(d), float(2**bits - 1))
                for k, d in enumerate(digits)]
    return out


def program(c, off, span, prot, rowlen, stuck, par, ip, keys):
    """(rec0, rect, g, read sigma) lists; ``stuck`` maps cell id -> 0 on / 1 off."""
    g_min, g_max, sigma, lnt, nu_m, nu_s, rsig, pread = par
    prog, drift, mapping, slices, bits, _ = ip
    dg = g_max - g_min
    rec0, rect, gs, ss = [], [], {}, {}
    for i, ci in enumerate(c):
        r = i // rowlen
        if prot[i]:
            rec0.append(ci)
            rect.append(ci)
            continue
        s0 = st = 0.0
        for n, (sign, mult, lev, lvmax) in enumerate(targets(ci, off[r], span[r], mapping,
                                                              bits, slices)):
            j = i * len(targets(0.0, off[r], span[r], mapping, bits, slices)) + n
            gt = g_min + dg * lev / lvmax
            sread = 0.0
            if j in stuck:
                gp = g = g_max if stuck[j] == 0 else g_min
            else:
                z = normal(keys[0], j)
                gp = {0: gt, 1: gt * (1 + sigma * z), 2: gt * math.exp(sigma * z),
                      3: gt + sigma * g_max * z}.get(prog)
                if prog == 4:
                    x = gt / g_max
                    sp = (0.26348 + 1.9650 * x - 1.1731 * x * x) * g_max / 25.0
                    gp = max(gt + sigma * sp * z, 0.0)
                g = gp
                if drift == 1:
                    g = gp * math.exp(-(nu_m + nu_s * normal(keys[1], j)) * lnt)
                elif drift == 2:
                    gr = max(abs(gt / g_max), 1e-7)
                    mu = min(max(-0.0155 * math.log(gr) + 0.0244, 0.049), 0.1)
                    sd = min(max(-0.0125 * math.log(gr) - 0.0059, 0.008), 0.045)
                    g = gp * math.exp(-abs(mu + sd * normal(keys[1], j)) * lnt)
                if prog == 4:
                    qs = min(0.0088 / max((abs(gp) / g_max) ** 0.65, 1e-3), 0.2)
                    sread = abs(g) * rsig * qs * pread
                else:
                    sread = abs(g) * rsig
            s0 += sign * mult * (lev + (gp - gt) * lvmax / dg)
            st += sign * mult * (lev + (g - gt) * lvmax / dg)
            gs[j], ss[j] = g, sread
        if mapping == 1:
            s0, st = s0 - off[r], st - off[r]
        rec0.append(s0)
        rect.append(st)
    return rec0, rect, gs, ss


def read(c, off, span, prot, rowlen, gs, ss, par, ip, key):
    g_min, g_max = par[0], par[1]
    prog, _, mapping, slices, bits, _ = ip
    dg = g_max - g_min
    out = []
    for i, ci in enumerate(c):
        r = i // rowlen
        if prot[i]:
            out.append(ci)
            continue
        cells = targets(ci, off[r], span[r], mapping, bits, slices)
        acc = 0.0
        for n, (sign, mult, lev, lvmax) in enumerate(cells):
            j = i * len(cells) + n
            g = gs[j]
            if ss[j] > 0:
                g = g + ss[j] * normal(key, j)
                if prog == 4:
                    g = max(g, 0.0)
            acc += sign * mult * (lev + (g - (g_min + dg * lev / lvmax)) * lvmax / dg)
        out.append(acc - off[r] if mapping == 1 else acc)
    return out
