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
def _read(l8, l16, l32, w, s, i):
    if w == 1:
        return np.uint64(l8[s][i])
    if w == 2:
        return np.uint64(l16[s][i])
    return np.uint64(l32[s][i])


@njit(cache=True, nogil=True)
def _write(l8, l16, l32, w, s, i, y):
    if w == 1:
        l8[s][i] = np.uint8(y)
    elif w == 2:
        l16[s][i] = np.uint16(y)
    else:
        l32[s][i] = np.uint32(y)


@njit(cache=True, nogil=True)
def _apply(l8, l16, l32, width, slot, bits, signext, tensor, index, bit, kind,
           old, new, masked, changed):
    """Apply faults in order, recording old/new raw codes, masking and changed tensors."""
    for f in range(tensor.shape[0]):
        t = tensor[f]
        w = width[t]
        x = _read(l8, l16, l32, w, slot[t], index[f])
        y = _fault_code(x, bit[f], kind[f], bits[t], 8 * w, signext[t])
        _write(l8, l16, l32, w, slot[t], index[f], y)
        old[f] = np.uint32(x)
        new[f] = np.uint32(y)
        masked[f] = x == y
        if x != y:
            changed[t] = True


@njit(cache=True, nogil=True)
def _undo(l8, l16, l32, width, slot, tensor, index, old, changed):
    """Restore old raw codes in reverse order of application."""
    for f in range(tensor.shape[0] - 1, -1, -1):
        t = tensor[f]
        w = width[t]
        x = _read(l8, l16, l32, w, slot[t], index[f])
        if x != np.uint64(old[f]):
            changed[t] = True
            _write(l8, l16, l32, w, slot[t], index[f], np.uint64(old[f]))


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
