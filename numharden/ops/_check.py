"""Boundary validation shared by the ops: dtype, shape and hyper-parameter checks.

Every check raises a numharden error whose message names the argument, the expected and
the found value, and how to fix the call.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DTypeError, ShapeError

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def as_float(name: str, x, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32/float64 array (no copy when it already is)."""
    if not isinstance(x, np.ndarray):
        raise DTypeError(f"{name} must be a numpy.ndarray of float32 or float64, found "
                         f"{type(x).__name__}; pass np.asarray(..., dtype=np.float32)")
    if x.dtype not in FLOATS:
        raise DTypeError(f"{name} must be float32 or float64, found {x.dtype}; "
                         f"convert with {name}.astype(np.float32)")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.ndim not in allowed:
            raise ShapeError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
                             f"found shape {x.shape}; check the layout (activations are NHWC)")
    return np.ascontiguousarray(x)


def like(name: str, a, ref: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Check that ``a`` has the dtype of ``ref`` (and ``shape`` if given); return it
    C-contiguous."""
    a = as_float(name, a)
    if a.dtype != ref.dtype:
        raise DTypeError(f"{name} has dtype {a.dtype} but the input has {ref.dtype}; ops "
                         f"preserve one dtype, cast with {name}.astype(np.{ref.dtype})")
    if shape is not None and a.shape != tuple(shape):
        raise ShapeError(f"{name} must have shape {tuple(shape)}, found {a.shape}")
    return a


def ints(name: str, value, n: int, minimum: int) -> tuple[int, ...]:
    """Parse an int or an ``n``-sequence of ints, each >= ``minimum``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * n
    try:
        out = tuple(int(v) for v in value)
        ok = len(out) == n and all(int(v) == v and not isinstance(v, bool) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok or min(out) < minimum:
        raise ConfigError(f"{name} must be an int or {n} ints >= {minimum}, found {value!r}; "
                          f"e.g. {name}={(max(minimum, 1),) * n}")
    return out


def out_size(name: str, size: int, pad_lo: int, pad_hi: int, k: int, stride: int,
             dilation: int, ceil_mode: bool = False) -> int:
    """Output length of a sliding window along one axis, PyTorch's rule (incl. ceil_mode)."""
    span = size + pad_lo + pad_hi - dilation * (k - 1) - 1
    if span < 0:
        raise ShapeError(f"{name}: the window (kernel {k}, dilation {dilation}) is larger "
                         f"than the padded input ({size} + {pad_lo} + {pad_hi}); use a "
                         "smaller kernel or more padding")
    if ceil_mode:
        out = -(-span // stride) + 1
        # PyTorch: the last window must start inside the input or the left padding
        if (out - 1) * stride >= size + pad_lo:
            out -= 1
    else:
        out = span // stride + 1
    return out


def grad_like(name: str, gy, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Check an incoming gradient against the forward output's shape and dtype."""
    gy = as_float(name, gy)
    if gy.shape != tuple(shape):
        raise ShapeError(f"{name} must have the forward output's shape {tuple(shape)}, "
                         f"found {gy.shape}; pass the gradient of that output")
    if gy.dtype != dtype:
        raise DTypeError(f"{name} has dtype {gy.dtype} but the forward ran in {dtype}; "
                         f"cast with {name}.astype(np.{dtype})")
    return gy


def colsum(a: np.ndarray) -> np.ndarray:
    """Column sums of a 2-D C-contiguous array (M, C) in float64.

    numpy reduces axis 0 of a narrow matrix one scalar at a time; viewing k rows as one
    wide row of ~1024 values lets it add whole rows as vectors (6x faster for C=16).
    """
    M, C = a.shape
    k = max(1, 1024 // max(C, 1))
    Mk = M // k * k
    out = a[:Mk].reshape(-1, k * C).sum(axis=0, dtype=np.float64).reshape(k, C).sum(axis=0)
    return out + a[Mk:].sum(axis=0, dtype=np.float64)
