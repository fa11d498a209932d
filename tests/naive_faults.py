"""Slow loop twins of numharden.faults._kernels, written independently on Python ints.

Codes are handled as lists of bits and two's-complement values rather than masks, so a
shared mistake in the mask arithmetic would not cancel out.
"""

from __future__ import annotations


def to_bits(x: int, width: int) -> list[int]:
    """Bits of the raw code x, LSB first."""
    return [(x >> i) & 1 for i in range(width)]


def from_bits(b: list[int]) -> int:
    return sum(v << i for i, v in enumerate(b))


def naive_normalize(y: int, bits: int, width: int, signed_narrow: bool) -> int:
    """Value of the low ``bits`` bits (two's complement if signed_narrow) as a width-bit raw."""
    low = to_bits(y, width)[:bits]
    if signed_narrow:
        value = from_bits(low[:-1]) - low[-1] * 2 ** (bits - 1)
    else:
        value = from_bits(low)
    return value % 2**width


def naive_fault_code(x: int, bit: int, kind: int, bits: int, width: int,
                     signed_narrow: bool) -> int:
    b = to_bits(x, width)
    b[bit] = {0: 1 - b[bit], 1: 0, 2: 1}[kind]
    return naive_normalize(from_bits(b), bits, width, signed_narrow)


def naive_locate(g, sizes, positions):
    """(tensor, flat index, bit) of each global eligible-bit number, by walking tensors."""
    out = []
    for x in g:
        x = int(x)
        for t, (size, pos) in enumerate(zip(sizes, positions)):
            if x < size * len(pos):
                out.append((t, x // len(pos), int(pos[x % len(pos)])))
                break
            x -= size * len(pos)
        else:
            raise AssertionError("global position beyond the last tensor")
    return out


def naive_locate_values(v, sizes):
    out = []
    for x in v:
        x = int(x)
        for t, size in enumerate(sizes):
            if x < size:
                out.append((t, x))
                break
            x -= size
    return out


def naive_apply(raws, bits, signed_narrow, tensor, index, bit, kind):
    """Apply faults to a list of flat raw arrays in place; returns old, new, masked, changed."""
    old, new, masked = [], [], []
    changed = [False] * len(raws)
    for t, i, b, k in zip(tensor, index, bit, kind):
        t, i = int(t), int(i)
        r = raws[t]
        width = 8 * r.itemsize
        x = int(r[i])
        y = naive_fault_code(x, int(b), int(k), bits[t], width, signed_narrow[t])
        r[i] = y
        old.append(x)
        new.append(y)
        masked.append(x == y)
        changed[t] = changed[t] or x != y
    return old, new, masked, changed


def naive_undo(raws, tensor, index, old):
    for t, i, o in reversed(list(zip(tensor, index, old))):
        raws[int(t)][int(i)] = int(o)


def naive_apply_array(raw, index, bit, kind, bits, signed_narrow):
    n = 0
    for i, b, k in zip(index, bit, kind):
        x = int(raw[int(i)])
        y = naive_fault_code(x, int(b), int(k), bits, 8 * raw.itemsize, signed_narrow)
        n += x != y
        raw[int(i)] = y
    return n
