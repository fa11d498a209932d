"""parse_format: spec strings to Format objects."""

from __future__ import annotations

import re
from functools import lru_cache

from ..errors import ConfigError
from .base import Format
from .floats import _FLOATS, FloatFormat
from .integer import AffineFormat, FixedFormat, IntFormat

VALID_SPECS = (
    "fp32, fp16, bf16; int2..int8 and int2/ch..int8/ch (signed symmetric); "
    "uint2..uint8 and uint2/ch..uint8/ch (unsigned affine); q<m>.<n> (signed fixed point, "
    "m >= 1 integer bits incl. sign, n >= 0 fraction bits, 2 <= m+n <= 32, e.g. q4.12)"
)

_INT = re.compile(r"(u?)int(\d+)(/ch)?")
_FIXED = re.compile(r"q(\d+)\.(\d+)")


def parse_format(spec) -> Format:
    """Return the Format named by ``spec`` (a Format is returned unchanged).

    Parameters
    ----------
    spec : str or Format
        One of: ``fp32 fp16 bf16``, ``int2..int8`` (+ ``/ch``), ``uint2..uint8``
        (+ ``/ch``), ``q<m>.<n>``. Case and surrounding spaces are ignored.

    Returns
    -------
    Format
        ``parse_format(fmt.spec) == fmt`` for every format.

    Raises
    ------
    ConfigError
        If ``spec`` names no format; the message lists the valid specs.
    """
    if isinstance(spec, Format):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(
            f"number format: expected a spec string, found {type(spec).__name__} {spec!r}; "
            f"valid specs: {VALID_SPECS}"
        )
    return _parse(spec.strip().lower())


@lru_cache(maxsize=None)
def _parse(s: str) -> Format:
    if s in _FLOATS:
        return FloatFormat.from_spec(s)
    m = _INT.fullmatch(s)
    if m and 2 <= int(m.group(2)) <= 8:
        cls = AffineFormat if m.group(1) else IntFormat
        return cls.make(int(m.group(2)), m.group(3) is not None)
    m = _FIXED.fullmatch(s)
    if m and int(m.group(1)) >= 1 and 2 <= int(m.group(1)) + int(m.group(2)) <= 32:
        return FixedFormat.make(int(m.group(1)), int(m.group(2)))
    raise ConfigError(f"unknown number format {s!r}; valid specs: {VALID_SPECS}")
