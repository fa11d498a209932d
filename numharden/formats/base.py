"""Format base class and StoredTensor: what a number format stores and how to read it back.

A :class:`Format` turns float tensors into *codes* in a native storage dtype and back. A
:class:`StoredTensor` holds those codes together with the scale (and zero point) needed
to decode them. Faults act on ``StoredTensor.raw()``, the unsigned view of the codes;
:meth:`Format.normalize_raw` says how a faulted bit pattern of the low ``bits`` bits maps
back to a valid stored code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DTypeError, FormatError, ShapeError

_RAW_DTYPES = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.uint32)}


def _label(name: str | None) -> str:
    return f"tensor {name!r}" if name else "input tensor"


@dataclass(frozen=True)
class Format:
    """A number format: how floats become stored codes (abstract; see subclasses).

    Attributes
    ----------
    spec : str
        Canonical string; ``parse_format(fmt.spec) == fmt``.
    kind : str
        ``'float'``, ``'int'``, ``'affine'`` or ``'fixed'``.
    bits : int
        Stored, fault-visible bits per value (may be fewer than the storage width).
    signed : bool
        Whether codes are signed (floats count as signed: they have a sign bit).
    storage_dtype : numpy.dtype
        Narrowest native dtype holding the codes.
    """

    spec: str
    kind: str
    bits: int
    signed: bool
    storage_dtype: np.dtype

    # -- per-format behaviour, overridden by subclasses ------------------------------
    @property
    def per_channel(self) -> bool:
        """True if the format carries one scale per channel (``/ch`` specs)."""
        return False

    @property
    def bit_fields(self) -> dict[str, tuple[int, ...]]:
        """Named groups of bit positions (bit 0 = LSB of the stored code).

        Floats name ``'sign'``, ``'exponent'``, ``'mantissa'``; integer and fixed-point
        formats name ``'msb'`` and ``'lsb'`` (signed ones also ``'sign'`` = msb).
        """
        raise NotImplementedError(f"{type(self).__name__}.bit_fields")

    def encode(self, x, axis=None, *, name=None) -> StoredTensor:
        """Encode float ``x`` with a scale (and zero point) derived from ``x``."""
        raise NotImplementedError(f"{type(self).__name__}.encode")

    def encode_with(self, x, scale, zero_point=None, axis=None, *, name=None) -> StoredTensor:
        """Encode float ``x`` with a given scale (and zero point)."""
        raise NotImplementedError(f"{type(self).__name__}.encode_with")

    def decode(self, codes, scale=None, zero_point=None, axis=None) -> np.ndarray:
        """Decode stored ``codes`` to float32."""
        raise NotImplementedError(f"{type(self).__name__}.decode")

    def _check_params(self, shape, scale, zero_point, axis) -> None:
        """Raise if scale / zero point / axis do not fit codes of ``shape``."""
        raise NotImplementedError(f"{type(self).__name__}._check_params")

    # -- raw bit patterns -----------------------------------------------------------
    @property
    def raw_dtype(self) -> np.dtype:
        """Unsigned dtype of the same width as ``storage_dtype`` (uint8/16/32)."""
        return _RAW_DTYPES[self.storage_dtype.itemsize]

    @property
    def raw_mask(self) -> int:
        """Mask of the fault-visible bits, ``2**bits - 1``."""
        return (1 << self.bits) - 1

    @property
    def sign_extends(self) -> bool:
        """True if raw codes must be sign-extended above ``bits`` (narrow signed ints)."""
        return self.signed and self.kind != "float" and self.bits < 8 * self.storage_dtype.itemsize

    def normalize_raw(self, raw) -> np.ndarray:
        """Map raw bit patterns back to valid stored raw codes.

        Only the low ``bits`` bits of a stored code are fault-visible. A pattern ``r``
        maps to ``r & raw_mask``; for narrow signed formats (``sign_extends``), if bit
        ``bits - 1`` is set, every bit above it in the storage width is set too
        (two's-complement sign extension). Floats and full-width formats are unchanged.

        Parameters
        ----------
        raw : array_like of int, any shape
            Bit patterns; values outside ``raw_dtype`` are reduced modulo its width.

        Returns
        -------
        ndarray, same shape, ``raw_dtype``
        """
        width = 8 * self.storage_dtype.itemsize
        r = np.asarray(raw).astype(np.uint64) & np.uint64((1 << width) - 1)
        if self.bits == width:
            return r.astype(self.raw_dtype)
        r &= np.uint64(self.raw_mask)
        if self.sign_extends:
            high = np.uint64(((1 << width) - 1) ^ self.raw_mask)
            neg = (r >> np.uint64(self.bits - 1)) & np.uint64(1)
            r = np.where(neg.astype(bool), r | high, r)
        return r.astype(self.raw_dtype)

    # -- helpers shared by subclasses ------------------------------------------------
    def _as_float(self, x, name) -> np.ndarray:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub":
            raise DTypeError(
                f"cannot encode {_label(name)} to {self.spec}: expected a real numeric array, "
                f"found dtype {arr.dtype}; convert it with np.asarray(x, dtype=np.float32)"
            )
        return arr

    def _check_finite(self, x: np.ndarray, name) -> None:
        bad = ~np.isfinite(x)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise FormatError(
                f"cannot encode {_label(name)} to {self.spec}: it holds {int(bad.sum())} "
                f"NaN/Inf value(s) (first at index {first}); integer formats need finite "
                "values - fix the diverged tensor or store it as 'fp32'"
            )

    def _check_codes(self, codes) -> np.ndarray:
        arr = np.asarray(codes)
        if arr.dtype != self.storage_dtype:
            raise DTypeError(
                f"cannot decode {self.spec} codes: expected dtype {self.storage_dtype}, found "
                f"{arr.dtype}; pass StoredTensor.codes or cast with .astype({self.storage_dtype})"
            )
        return arr


@dataclass(eq=False)
class StoredTensor:
    """Codes of one tensor as hardware holds them, plus what is needed to decode them.

    Attributes
    ----------
    codes : ndarray, logical shape, ``fmt.storage_dtype``, C-contiguous
    fmt : Format
    scale : ndarray or None
        float32, shape ``()`` or ``(C,)`` along ``axis``; None for float and fixed formats.
    zero_point : ndarray or None
        int32, same shape as ``scale`` (affine formats only).
    axis : int or None
        Channel axis of a per-channel scale / zero point.
    version : int
        Bumped by :meth:`touch`; caches derived from the codes compare it.
    protect : ndarray of bool or None
        Values held exactly in reliable storage: neither bit faults nor crossbar
        variation change them (docs/FORMAT.md section 5, ``protect``).
    """

    codes: np.ndarray
    fmt: Format
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    axis: int | None = None
    version: int = field(default=0)
    protect: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, Format):
            raise DTypeError(
                f"StoredTensor.fmt: expected a Format, found {type(self.fmt).__name__}; "
                "use numharden.formats.parse_format('int8') etc."
            )
        codes = np.asarray(self.codes)
        if codes.dtype != self.fmt.storage_dtype:
            raise DTypeError(
                f"StoredTensor codes for format {self.fmt.spec}: expected dtype "
                f"{self.fmt.storage_dtype}, found {codes.dtype}; encode with fmt.encode(x)"
            )
        self.codes = np.ascontiguousarray(codes)
        if self.scale is not None:
            self.scale = np.asarray(self.scale, dtype=np.float32)
        if self.zero_point is not None:
            self.zero_point = np.asarray(self.zero_point, dtype=np.int32)
        if self.axis is None and self.fmt.per_channel:
            self.axis = 0
        if self.axis is not None:
            nd = self.codes.ndim
            if not -nd <= self.axis < nd:
                raise ShapeError(
                    f"StoredTensor axis {self.axis} out of range for codes of shape "
                    f"{self.codes.shape}; use an axis in [{-nd}, {nd - 1}]"
                )
            self.axis = self.axis % nd
        self.fmt._check_params(self.codes.shape, self.scale, self.zero_point, self.axis)
        if self.protect is not None:
            p = np.asarray(self.protect)
            if p.shape != self.codes.shape or p.dtype.kind not in "bu":
                raise ShapeError(
                    f"StoredTensor protect mask: expected a bool/uint8 array of shape "
                    f"{self.codes.shape}, found {p.dtype} {p.shape}; pass one flag per value")
            self.protect = np.ascontiguousarray(p.astype(np.bool_))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    @property
    def size(self) -> int:
        return int(self.codes.size)

    @property
    def n_bits(self) -> int:
        """Fault-visible bits in the tensor, ``size * fmt.bits``."""
        return self.size * self.fmt.bits

    def decode(self) -> np.ndarray:
        """Decoded values, float32, same shape as ``codes``."""
        return self.fmt.decode(self.codes, self.scale, self.zero_point, self.axis)

    def raw(self) -> np.ndarray:
        """Unsigned view (uint8/16/32) of ``codes`` sharing memory; writes go to codes."""
        return self.codes.view(self.fmt.raw_dtype)

    def touch(self) -> None:
        """Record an in-place change of codes/scale (bumps ``version``)."""
        self.version += 1

    def copy(self) -> StoredTensor:
        """Deep copy (codes, scale, zero point); the copy keeps ``version``."""
        return StoredTensor(
            self.codes.copy(),
            self.fmt,
            None if self.scale is None else self.scale.copy(),
            None if self.zero_point is None else self.zero_point.copy(),
            self.axis,
            self.version,
            None if self.protect is None else self.protect.copy(),
        )
