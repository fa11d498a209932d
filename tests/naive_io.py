"""Slow, independent twins of numharden's file readers and writers, for tests only.

They use ``struct`` and plain loops so they share no code path with the library.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

# IDX type code -> (struct format char, element size, numpy dtype)
_IDX = {
    0x08: ("B", 1, np.uint8),
    0x09: ("b", 1, np.int8),
    0x0B: ("h", 2, np.int16),
    0x0C: ("i", 4, np.int32),
    0x0D: ("f", 4, np.float32),
    0x0E: ("d", 8, np.float64),
}
_CODE_OF = {np.dtype(v[2]): k for k, v in _IDX.items()}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise ``arr`` as IDX, one struct.pack per element."""
    arr = np.asarray(arr)
    code = _CODE_OF[arr.dtype]
    fmt = _IDX[code][0]
    out = bytearray(b"\x00\x00" + bytes([code, arr.ndim]))
    for d in arr.shape:
        out += struct.pack(">I", d)
    for v in arr.reshape(-1).tolist():
        out += struct.pack(">" + fmt, v)
    return bytes(out)


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    Path(path).write_bytes(gzip.compress(data) if gz else data)
    return Path(path)


def naive_read_idx(path: Path, max_items: int | None = None) -> np.ndarray:
    """Parse an IDX file element by element (optionally only the first ``max_items``
    entries of the first dimension)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    assert data[0] == 0 and data[1] == 0
    fmt, size, dtype = _IDX[data[2]]
    ndim = data[3]
    shape = [struct.unpack(">I", data[4 + 4 * i: 8 + 4 * i])[0] for i in range(ndim)]
    if max_items is not None:
        shape[0] = min(shape[0], max_items)
    count = 1
    for d in shape:
        count *= d
    pos = 4 + 4 * ndim
    vals = []
    for _ in range(count):
        vals.append(struct.unpack(">" + fmt, data[pos:pos + size])[0])
        pos += size
    return np.array(vals, dtype=dtype).reshape(shape)
