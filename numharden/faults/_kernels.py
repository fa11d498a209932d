"""Private Numba kernels of the fault engine (loop twins in tests/naive_faults.py).

All arithmetic is on unsigned raw codes held in uint64 registers; no floats touch a code.
Raw views of different widths travel in three typed lists (uint8, uint16, uint32); a
tensor is addressed by its width in bytes and its slot in the list of that width.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _normalize(y, bits, width_bits, signext):
    """Low ``bits`` bits of y, sign-extended to ``width_bits`` if ``signext``."""
    mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    y = y & mask
    if signext and (y >> np.uint64(bits - 1)) & np.uint64(1):
        full = (np.uint64(1) << np.uint64(width_bits)) - np.uint64(1)
        y = y | (full ^ mask)
    return y


@njit(cache=True, nogil=True)
def _fault_code(x, bit, kind, bits, width_bits, signext):
    """Raw code after fault ``kind`` (0 flip, 1 sa0, 2 sa1) on ``bit`` of raw code x."""
    m = np.uint64(1) << np.uint64(bit)
    if kind == 0:
        y = x ^ m
    elif kind == 1:
        y = x & ~m
    else:
        y = x | m
    return _normalize(y, bits, width_bits, signext)


@njit(cache=True, nogil=True)
def _locate(g, cum, npos, table, tensor, index, bit):
    """Map sorted global eligible-bit numbers g to (tensor, flat index, bit position)."""
    t = 0
    for f in range(g.shape[0]):
        while g[f] >= cum[t + 1]:
            t += 1
        local = g[f] - cum[t]
        tensor[f] = t
        index[f] = local // npos[t]
        bit[f] = table[t, local % npos[t]]


@njit(cache=True, nogil=True)
def _locate_values(v, vcum, tensor, index):
    """Map sorted global value numbers v to (tensor, flat index)."""
    t = 0
    for f in range(v.shape[0]):
        while v[f] >= vcum[t + 1]:
            t += 1
        tensor[f] = t
        index[f] = v[f] - vcum[t]


@njit(cache=True, nogil=True)
def _apply(l8, l16, l32, width, slot, bits, signext, tensor, index, bit, kind,
           old, new, masked, changed):
    """Apply faults in order, recording old/new raw codes, masking and changed tensors."""
    # fetching a typed-list item costs far more than the access itself, so the current
    # tensor's view is held while consecutive faults stay in it (lists are tensor-sorted)
    a8, a16, a32 = l8[0] if len(l8) else np.empty(0, np.uint8), (
        l16[0] if len(l16) else np.empty(0, np.uint16)), (
        l32[0] if len(l32) else np.empty(0, np.uint32))
    cur, w, nb, sx = -1, 0, 0, False
    for f in range(tensor.shape[0]):
        t = tensor[f]
        if t != cur:
            cur, w, nb, sx = t, width[t], bits[t], signext[t]
            if w == 1:
                a8 = l8[slot[t]]
            elif w == 2:
                a16 = l16[slot[t]]
            else:
                a32 = l32[slot[t]]
        i = index[f]
        if w == 1:
            x = np.uint64(a8[i])
        elif w == 2:
            x = np.uint64(a16[i])
        else:
            x = np.uint64(a32[i])
        y = _fault_code(x, bit[f], kind[f], nb, 8 * w, sx)
        if w == 1:
            a8[i] = np.uint8(y)
        elif w == 2:
            a16[i] = np.uint16(y)
        else:
            a32[i] = np.uint32(y)
        old[f] = np.uint32(x)
        new[f] = np.uint32(y)
        masked[f] = x == y
        if x != y:
            changed[t] = True


@njit(cache=True, nogil=True)
def _undo(l8, l16, l32, width, slot, tensor, index, old, changed):
    """Restore old raw codes in reverse order of application."""
    a8, a16, a32 = l8[0] if len(l8) else np.empty(0, np.uint8), (
        l16[0] if len(l16) else np.empty(0, np.uint16)), (
        l32[0] if len(l32) else np.empty(0, np.uint32))
    cur, w = -1, 0
    for f in range(tensor.shape[0] - 1, -1, -1):
        t = tensor[f]
        if t != cur:
            cur, w = t, width[t]
            if w == 1:
                a8 = l8[slot[t]]
            elif w == 2:
                a16 = l16[slot[t]]
            else:
                a32 = l32[slot[t]]
        i = index[f]
        o = old[f]
        if w == 1:
            diff = a8[i] != np.uint8(o)
            a8[i] = np.uint8(o)
        elif w == 2:
            diff = a16[i] != np.uint16(o)
            a16[i] = np.uint16(o)
        else:
            diff = a32[i] != o
            a32[i] = o
        if diff:
            changed[t] = True


@njit(cache=True, nogil=True)
def _apply_array(raw, index, bit, kind, bits, signext):
    """Apply faults to one flat raw array in place; returns the number of changed codes."""
    width_bits = 8 * raw.itemsize
    n = 0
    for f in range(index.shape[0]):
        x = np.uint64(raw[index[f]])
        y = _fault_code(x, bit[f], kind[f], bits, width_bits, signext)
        if x != y:
            n += 1
        raw[index[f]] = y
    return n


@njit(cache=True, nogil=True)
def _count_invalid(tensor, index, bit, sizes, bits):
    """Number of faults whose tensor id, flat index or bit lies outside its tensor."""
    n = 0
    nt = sizes.shape[0]
    for f in range(tensor.shape[0]):
        t = tensor[f]
        if t < 0 or t >= nt or index[f] < 0 or index[f] >= sizes[t] or bit[f] >= bits[t]:
            n += 1
    return n
