"""Reader for IDX files, the format MNIST and Fashion-MNIST are published in.

Layout (all integers big-endian)::

    bytes 0-1   0x00 0x00
    byte  2     element type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64)
    byte  3     number of dimensions d (1..255)
    4*d bytes   size of each dimension, uint32
    payload     prod(sizes) elements, row-major

Files may be gzip-compressed; compression is detected from the content (``1f 8b``), not
from the file name.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import FormatError

# IDX element type code -> big-endian NumPy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(
            f"IDX file {str(path)!r} does not exist; check the path or download the file"
        ) from None
    except OSError as exc:
        raise FormatError(f"IDX file {str(path)!r} cannot be read: {exc}") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise FormatError(
            f"IDX file {str(path)!r} is gzip-compressed but cannot be decompressed "
            f"({exc}); the download is truncated or corrupt, fetch the file again"
        ) from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed).

    Parameters
    ----------
    path : str or Path
        File to read.

    Returns
    -------
    ndarray
        Shape as declared in the header, native-endian dtype of the declared element
        type (uint8 for MNIST images and labels), C-contiguous.

    Raises
    ------
    FormatError
        Bad magic number, unknown element type, zero dimensions, or a payload whose
        length differs from what the header declares (the message gives both byte
        counts).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise FormatError(
            f"IDX file {str(path)!r}: expected a 4-byte header, found {len(data)} bytes; "
            "the file is truncated, fetch it again"
        )
    if data[0] != 0 or data[1] != 0:
        raise FormatError(
            f"IDX file {str(path)!r}: expected magic bytes 00 00 at offset 0, found "
            f"{data[0]:02x} {data[1]:02x}; this is not an IDX file"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise FormatError(
            f"IDX file {str(path)!r}: expected an element type code in ({known}), found "
            f"0x{code:02X}; the file is corrupt or not an IDX file"
        )
    if ndim == 0:
        raise FormatError(
            f"IDX file {str(path)!r}: expected at least 1 dimension, found 0; "
            "the header is corrupt"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise FormatError(
            f"IDX file {str(path)!r}: expected a {header_len}-byte header for {ndim} "
            f"dimensions, found {len(data)} bytes; the file is truncated, fetch it again"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_len
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise FormatError(
            f"IDX file {str(path)!r}: header declares shape {shape} of {dtype.name} = "
            f"{expected} payload bytes, found {found} bytes; the file is {what}, "
            "fetch it again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return np.ascontiguousarray(arr.astype(dtype.newbyteorder("="), copy=True))
