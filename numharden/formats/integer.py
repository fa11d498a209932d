"""Integer formats: signed symmetric, unsigned affine, signed fixed point.

Quantization arithmetic is float32 with round-half-to-even (``np.rint``):
``q = clip(rint(x / S) [+ Z], qmin, qmax)`` and decoding ``r = S (q - Z)``. Codes of
``bits`` < storage width are stored sign-extended (signed) / zero-extended (unsigned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, FormatError, ShapeError
from .base import Format, StoredTensor

_TINY = np.float32(np.finfo(np.float32).smallest_subnormal)


def _bshape(ndim: int, axis: int | None) -> tuple[int, ...]:
    """Shape broadcasting a per-channel (C,) vector along ``axis`` of an ndim array."""
    if axis is None:
        return ()
    s = [1] * ndim
    s[axis] = -1
    return tuple(s)


def _channel_minmax(x: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-tensor (shape ()) or per-channel (shape (C,)) min and max; 0 for empty slices."""
    if axis is None:
        flat = x.reshape(1, -1)
    else:
        flat = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    lo = flat.min(axis=1, initial=np.float32(0)) if flat.size else np.zeros(len(flat), np.float32)
    hi = flat.max(axis=1, initial=np.float32(0)) if flat.size else np.zeros(len(flat), np.float32)
    if axis is None:
        return lo.reshape(()), hi.reshape(())
    return lo, hi


@dataclass(frozen=True)
class _ScaledFormat(Format):
    """Common code of the scaled integer formats (symmetric and affine)."""

    channel: bool = False
    qmin: int = 0
    qmax: int = 0

    @property
    def per_channel(self) -> bool:
        return self.channel

    @property
    def bit_fields(self) -> dict[str, tuple[int, ...]]:
        f = {"msb": (self.bits - 1,), "lsb": (0,)}
        if self.signed:
            f["sign"] = (self.bits - 1,)
        return f

    def _axis(self, ndim: int, axis) -> int | None:
        if not self.channel:
            if axis is not None:
                raise ConfigError(
                    f"format {self.spec} has one scale per tensor but axis={axis} was given; "
                    f"use '{self.spec}/ch' for per-channel scales or pass axis=None"
                )
            return None
        axis = 0 if axis is None else int(axis)
        if not -ndim <= axis < ndim:
            raise ShapeError(
                f"format {self.spec} needs a channel axis: axis {axis} is out of range for "
                f"a {ndim}-d tensor; pass a tensor with at least one dimension or a valid axis"
            )
        return axis % ndim

    def _check_params(self, shape, scale, zero_point, axis) -> None:
        want = () if axis is None else (shape[axis],)
        if self.channel and axis is None:
            raise ConfigError(f"format {self.spec} is per-channel: give the channel axis")
        if not self.channel and axis is not None:
            raise ConfigError(f"format {self.spec} is per-tensor: axis must be None, found {axis}")
        if scale is None:
            raise ConfigError(f"format {self.spec} needs a scale; encode with fmt.encode(x)")
        s = np.asarray(scale)
        if s.shape != want:
            raise ShapeError(
                f"format {self.spec}: scale shape expected {want} for codes of shape {shape}, "
                f"found {s.shape}; give one scale per {'channel' if self.channel else 'tensor'}"
            )
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            raise ConfigError(
                f"format {self.spec}: scales must be finite and > 0, found {s.ravel()[:8]}; "
                "an all-zero tensor uses scale 1"
            )
        self._check_zero_point(want, zero_point)

    def _check_zero_point(self, want, zero_point) -> None:
        raise NotImplementedError

    def _quantize(self, x, scale, zp, axis) -> np.ndarray:
        b = _bshape(x.ndim, axis)
        with np.errstate(over="ignore"):  # |x / S| beyond float32 saturates below anyway
            q = np.rint(x / scale.reshape(b))
        if zp is not None:
            q += zp.astype(np.float32).reshape(b)
        return np.clip(q, self.qmin, self.qmax).astype(self.storage_dtype)

    def _prepare(self, x, axis, name):
        arr = self._as_float(x, name).astype(np.float32)
        self._check_finite(arr, name)
        return np.ascontiguousarray(arr), self._axis(arr.ndim, axis)

    def encode_with(self, x, scale, zero_point=None, axis=None, *, name=None) -> StoredTensor:
        """Encode ``x`` (real, any shape) with the given float32 scale (and zero point).

        ``scale`` has shape () per tensor or (C,) per channel along ``axis`` (default 0
        for ``/ch`` formats). Values outside the code range saturate.
        """
        arr, ax = self._prepare(x, axis, name)
        s = np.asarray(scale, dtype=np.float32)
        zp = None if zero_point is None else np.asarray(zero_point)
        if zp is not None and zp.dtype.kind not in "iu":
            raise ConfigError(f"format {self.spec}: zero point must be integer, found {zp.dtype}")
        zp = None if zp is None else zp.astype(np.int32)
        self._check_params(arr.shape, s, zp, ax)
        return StoredTensor(self._quantize(arr, s, zp, ax), self, s, zp, ax)

    def decode(self, codes, scale=None, zero_point=None, axis=None) -> np.ndarray:
        """Decode codes (storage dtype, any shape) to float32 ``S (q - Z)``.

        Every pattern of the ``bits`` fault-visible bits decodes (e.g. int4 code -8);
        codes outside that range are not valid stored codes and raise FormatError.
        """
        c = self._check_codes(codes)
        ax = self._axis(c.ndim, axis)
        s = None if scale is None else np.asarray(scale, dtype=np.float32)
        zp = None if zero_point is None else np.asarray(zero_point, dtype=np.int32)
        self._check_params(c.shape, s, zp, ax)
        lo, hi = (-(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1) if self.signed else (
            0, (1 << self.bits) - 1)
        if c.size and (int(c.min()) < lo or int(c.max()) > hi):
            raise FormatError(
                f"{self.spec} codes must lie in [{lo}, {hi}], found [{int(c.min())}, "
                f"{int(c.max())}]; narrow codes are stored sign-/zero-extended - repair raw "
                "bit patterns with fmt.normalize_raw"
            )
        b = _bshape(c.ndim, ax)
        q = c.astype(np.int32)
        if zp is not None:
            q = q - zp.reshape(b)
        return q.astype(np.float32) * s.reshape(b)


@dataclass(frozen=True)
class IntFormat(_ScaledFormat):
    """Signed symmetric N-bit integers, N = 2..8; ``scale = max|x| / (2^(N-1) - 1)``."""

    @classmethod
    def make(cls, bits: int, channel: bool) -> IntFormat:
        spec = f"int{bits}" + ("/ch" if channel else "")
        q = (1 << (bits - 1)) - 1
        return cls(spec, "int", bits, True, np.dtype(np.int8), channel, -q, q)

    def _check_zero_point(self, want, zero_point) -> None:
        if zero_point is not None:
            raise ConfigError(
                f"format {self.spec} is symmetric and has no zero point, found {zero_point!r}; "
                f"pass None or use 'u{self.spec}' for an affine format"
            )

    def encode(self, x, axis=None, *, name=None) -> StoredTensor:
        """Encode ``x`` (real, finite, any shape) to the narrow range [-qmax, qmax].

        ``scale = max|x| / qmax`` per tensor or per channel (``/ch``: along ``axis``,
        default 0); an all-zero slice gets scale 1.
        """
        arr, ax = self._prepare(x, axis, name)
        lo, hi = _channel_minmax(arr, ax)
        amax = np.maximum(-lo, hi).astype(np.float32)
        s = amax / np.float32(self.qmax)
        s = np.where(amax == 0, np.float32(1), np.maximum(s, _TINY)).astype(np.float32)
        return StoredTensor(self._quantize(arr, s, None, ax), self, s, None, ax)


@dataclass(frozen=True)
class AffineFormat(_ScaledFormat):
    """Unsigned affine N-bit integers, N = 2..8: ``r = S (q - Z)`` (Jacob et al. 2018)."""

    @classmethod
    def make(cls, bits: int, channel: bool) -> AffineFormat:
        spec = f"uint{bits}" + ("/ch" if channel else "")
        return cls(spec, "affine", bits, False, np.dtype(np.uint8), channel, 0, (1 << bits) - 1)

    def _check_zero_point(self, want, zero_point) -> None:
        if zero_point is None:
            raise ConfigError(f"format {self.spec} needs a zero point; encode with fmt.encode(x)")
        z = np.asarray(zero_point)
        if z.shape != want:
            raise ShapeError(
                f"format {self.spec}: zero point shape expected {want}, found {z.shape}; "
                "give one zero point per scale"
            )
        if z.size and (z.min() < 0 or z.max() > self.qmax):
            raise ConfigError(
                f"format {self.spec}: zero points must lie in [0, {self.qmax}], found "
                f"[{int(z.min())}, {int(z.max())}]"
            )

    def encode(self, x, axis=None, *, name=None) -> StoredTensor:
        """Encode ``x`` (real, finite, any shape) with range [min(x, 0), max(x, 0)].

        ``S = (hi - lo) / (2^N - 1)``, ``Z = clip(rint(-lo / S), 0, 2^N - 1)`` so that 0
        is exact; per tensor or per channel (``/ch``). A constant-zero slice gets S=1, Z=0.
        """
        arr, ax = self._prepare(x, axis, name)
        lo, hi = _channel_minmax(arr, ax)
        width = (hi.astype(np.float32) - lo.astype(np.float32)).astype(np.float32)
        s = width / np.float32(self.qmax)
        s = np.where(width == 0, np.float32(1), np.maximum(s, _TINY)).astype(np.float32)
        z = np.clip(np.rint(-lo / s), 0, self.qmax).astype(np.int32)
        return StoredTensor(self._quantize(arr, s, z, ax), self, s, z, ax)


@dataclass(frozen=True)
class FixedFormat(Format):
    """Signed fixed point Q(m.n): m integer bits incl. sign, n fraction bits, saturating.

    Code range is the full two's complement range of m + n bits; value = code * 2^-n.
    No stored scale: ``StoredTensor.scale`` is None.
    """

    int_bits: int = 1
    frac_bits: int = 0

    @classmethod
    def make(cls, m: int, n: int) -> FixedFormat:
        b = m + n
        dt = np.dtype(np.int8) if b <= 8 else np.dtype(np.int16) if b <= 16 else np.dtype(np.int32)
        return cls(f"q{m}.{n}", "fixed", b, True, dt, m, n)

    @property
    def bit_fields(self) -> dict[str, tuple[int, ...]]:
        return {"msb": (self.bits - 1,), "lsb": (0,), "sign": (self.bits - 1,)}

    def _check_params(self, shape, scale, zero_point, axis) -> None:
        if scale is not None or zero_point is not None or axis is not None:
            raise ConfigError(
                f"fixed-point format {self.spec} has the implied scale 2**-{self.frac_bits} "
                f"and no zero point or axis; found scale={scale!r}, zero_point={zero_point!r}, "
                f"axis={axis!r}; pass None"
            )

    def encode(self, x, axis=None, *, name=None) -> StoredTensor:
        """Encode ``x`` (real, finite, any shape): ``clip(rint(x * 2^n), -2^(b-1), 2^(b-1)-1)``.

        Computed in float64 so that 32-bit codes are exact.
        """
        self._check_params(None, None, None, axis)
        arr = self._as_float(x, name)
        self._check_finite(arr, name)
        with np.errstate(over="ignore"):  # saturates below
            q = np.rint(arr.astype(np.float64) * (2.0**self.frac_bits))
        lim = 1 << (self.bits - 1)
        codes = np.clip(q, -lim, lim - 1).astype(self.storage_dtype)
        return StoredTensor(np.ascontiguousarray(codes), self)

    def encode_with(self, x, scale, zero_point=None, axis=None, *, name=None) -> StoredTensor:
        """As :meth:`encode`; the scale is implied, so ``scale`` must be None."""
        self._check_params(None, scale, zero_point, axis)
        return self.encode(x, name=name)

    def decode(self, codes, scale=None, zero_point=None, axis=None) -> np.ndarray:
        """float32 values ``code * 2^-n`` (rounded once from float64)."""
        self._check_params(None, scale, zero_point, axis)
        c = self._check_codes(codes)
        lim = 1 << (self.bits - 1)
        if self.sign_extends and c.size and (int(c.min()) < -lim or int(c.max()) >= lim):
            raise FormatError(
                f"{self.spec} codes must lie in [{-lim}, {lim - 1}], found [{int(c.min())}, "
                f"{int(c.max())}]; repair raw bit patterns with fmt.normalize_raw"
            )
        return (c.astype(np.float64) * (2.0**-self.frac_bits)).astype(np.float32)

