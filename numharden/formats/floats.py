"""IEEE binary32 / binary16 and bfloat16 formats.

fp32 and fp16 codes are float32 / float16 arrays; bf16 codes are the uint16 upper halves
of float32 bit patterns, rounded to nearest even. NaN stays NaN (quiet), +-Inf and -0.0
are preserved. These formats have no scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .base import Format, StoredTensor

# spec -> (storage dtype, exponent bits, mantissa bits)
_FLOATS = {
    "fp32": (np.dtype(np.float32), 8, 23),
    "fp16": (np.dtype(np.float16), 5, 10),
    "bf16": (np.dtype(np.uint16), 8, 7),
}


def bf16_from_float32(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 bit patterns (round to nearest, ties to even).

    Parameters
    ----------
    x : ndarray, any shape, float32

    Returns
    -------
    ndarray, same shape, uint16
        NaN maps to a quiet NaN with the same sign and upper payload bits.
    """
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    # adding 0x7FFF + lsb carries into the upper half exactly when RNE rounds up; finite
    # values cannot overflow uint32 (max 0xFF7FFFFF + 0x8000), they may round up to Inf.
    rounded = (u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    quiet = (u >> np.uint32(16)) | np.uint32(0x0040)
    return np.where(nan, quiet, rounded).astype(np.uint16)


def bf16_to_float32(codes: np.ndarray) -> np.ndarray:
    """Exact float32 values of bfloat16 bit patterns (uint16, any shape)."""
    return (np.asarray(codes, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


@dataclass(frozen=True)
class FloatFormat(Format):
    """fp32, fp16 or bf16; ``bits`` equals the storage width, no scale."""

    exponent_bits: int = 8
    mantissa_bits: int = 23

    @classmethod
    def from_spec(cls, spec: str) -> FloatFormat:
        dtype, e, m = _FLOATS[spec]
        return cls(spec, "float", 8 * dtype.itemsize, True, dtype, e, m)

    @property
    def bit_fields(self) -> dict[str, tuple[int, ...]]:
        m, e = self.mantissa_bits, self.exponent_bits
        return {
            "sign": (self.bits - 1,),
            "exponent": tuple(range(m, m + e)),
            "mantissa": tuple(range(m)),
        }

    def _check_params(self, shape, scale, zero_point, axis) -> None:
        if scale is not None or zero_point is not None or axis is not None:
            raise ConfigError(
                f"format {self.spec} has no scale, zero point or axis; found "
                f"scale={scale!r}, zero_point={zero_point!r}, axis={axis!r}; pass None"
            )

    def _encode(self, x, name) -> StoredTensor:
        arr = self._as_float(x, name)
        # overflow to +-Inf is the correct rounding; signalling NaNs stay NaN (quieted)
        with np.errstate(over="ignore", invalid="ignore"):
            if self.spec == "fp32":
                codes = np.array(arr, dtype=np.float32, order="C")
            elif self.spec == "fp16":
                codes = np.array(arr, dtype=np.float16, order="C")
            else:
                codes = bf16_from_float32(np.asarray(arr, dtype=np.float32))
        return StoredTensor(codes, self)

    def encode(self, x, axis=None, *, name=None) -> StoredTensor:
        """Round ``x`` (any real dtype, any shape) to this float format.

        fp16 rounds directly from the input dtype; bf16 rounds from float32 (inputs of
        other dtypes are first cast to float32). NaN/Inf are kept. ``axis`` must be None.
        """
        self._check_params(None, None, None, axis)
        return self._encode(x, name)

    def encode_with(self, x, scale, zero_point=None, axis=None, *, name=None) -> StoredTensor:
        """As :meth:`encode`; float formats take no scale, so ``scale`` must be None."""
        self._check_params(None, scale, zero_point, axis)
        return self._encode(x, name)

    def decode(self, codes, scale=None, zero_point=None, axis=None) -> np.ndarray:
        """Exact float32 values of ``codes`` (storage dtype, any shape)."""
        self._check_params(None, scale, zero_point, axis)
        c = self._check_codes(codes)
        if self.spec == "bf16":
            return bf16_to_float32(c)
        return c.astype(np.float32)

