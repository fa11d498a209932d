"""Fake quantisation of weights and unsigned activation quantisation (PACT)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, DTypeError
from ..kernels import elementwise as _e
from ..kernels import quant as _k
from ._check import as_float, grad_like


def fake_quant_weight(w, fmt, axis=None):
    """Quantise-dequantise ``w`` with a number format, the scale taken from ``w``.

    Equals ``fmt.encode(w, axis).decode()`` cast to ``w``'s dtype. Its VJP is the
    straight-through estimator, applied by the autograd layer.

    Parameters
    ----------
    w : ndarray, float32 or float64, any shape
    fmt : numharden.formats.Format or str
        A format or its spec string (``'int4/ch'``; see ``parse_format``).
    axis : int, optional
        Channel axis for per-channel formats.

    Returns
    -------
    w_q : ndarray, shape and dtype of ``w``
    """
    from ..formats import parse_format

    w = as_float("w", w)
    fmt = parse_format(fmt)
    return np.asarray(fmt.encode(w, axis).decode(), dtype=w.dtype)


def _clip_value(name, x, bits, clip):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise ConfigError(f"{name}: bits must be an int in [1, 16], found {bits!r}")
    c = np.asarray(clip)
    if c.size != 1 or c.dtype.kind not in "fiu":
        raise ConfigError(f"{name}: clip must be one real number (a scalar or a size-1 "
                          f"array), found {clip!r}")
    return x.dtype.type(c.reshape(-1)[0])


def _step(name, x, bits, clip):
    clip_t = _clip_value(name, x, bits, clip)
    if not (math.isfinite(clip_t) and clip_t > 0):
        raise ConfigError(f"{name}: clip must be finite and > 0, found {clip!r}; "
                          "initialise the learnable clip to a positive value such as 6.0")
    return clip_t, clip_t / x.dtype.type(2 ** int(bits) - 1)


def _invalid_clip_output(shape, dtype, clip_t):
    """What a quantiser with a faulted clip register computes (docs/FAULTS.md): every code
    is 0; the dequantised value is 0 for a clip <= 0 (the range [0, clip] is empty, every
    input clamps to 0) and NaN for a NaN or +inf clip (step clip / (2^bits - 1) is not
    finite, and code * step is NaN)."""
    fill = dtype.type(0.0) if clip_t <= 0 else dtype.type(np.nan)
    return np.full(shape, fill, dtype=dtype)


def _code_dtype(bits):
    return np.uint8 if bits <= 8 else np.uint16


def act_quant(x, bits, clip, *, codes=True):
    """Unsigned uniform quantisation of activations to ``bits`` bits on [0, clip].

    With ``s = clip / (2**bits - 1)`` computed in ``x``'s dtype:
    ``codes = rint(min(max(x, 0), clip) / s)`` (round half to even) and
    ``y = codes * s``. NaN inputs map to code 0 (a hardware quantiser emits no NaN);
    +inf saturates to the top code.

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape
    bits : int in [1, 16]
    clip : float (or a size-1 array holding it)
        Normally finite and > 0. A faulted clip is computed as the hardware would: for
        ``clip <= 0`` every code and output is 0; for a NaN or +inf clip every code is 0
        and every output NaN (docs/FAULTS.md, "Faults on activation clips"). Training
        (:func:`act_quant_vjp`) still requires a finite clip > 0.
    codes : bool, keyword-only
        False skips computing the codes (inference needs only ``y``; same ``y`` bits).

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    codes : ndarray, shape of ``x``, uint8 (bits <= 8) or uint16; None if ``codes=False``
    """
    x = as_float("x", x)
    clip_t = _clip_value("act_quant", x, bits, clip)
    if not (math.isfinite(clip_t) and clip_t > 0):  # a fault hit the clip
        return (_invalid_clip_output(x.shape, x.dtype, clip_t),
                np.zeros(x.shape, _code_dtype(bits)) if codes else None)
    clip_t, s = _step("act_quant", x, bits, clip)
    y = np.empty_like(x)
    c = np.empty(x.shape if codes else (0,), dtype=_code_dtype(bits))
    kernel = _k.act_quant_fwd if x.size >= _e.SERIAL_BELOW else _k.act_quant_fwd_serial
    kernel(x.reshape(-1), clip_t, s, y.reshape(-1), c.reshape(-1))
    return y, (c if codes else None)


def act_quant_from_codes(codes, bits, clip, dtype=np.float32):
    """Dequantise activation codes: ``codes * s`` with ``s = clip / (2**bits - 1)``.

    Bit-identical to the ``y`` of :func:`act_quant` for the same codes, bits and clip.

    Parameters
    ----------
    codes : ndarray, uint8 or uint16, any shape
    bits : int in [1, 16]
    clip : float > 0
    dtype : float32 or float64

    Returns
    -------
    y : ndarray, shape of ``codes``, ``dtype``
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise DTypeError(f"dtype must be float32 or float64, found {dtype}")
    if not isinstance(codes, np.ndarray) or codes.dtype not in (np.uint8, np.uint16):
        raise DTypeError(f"codes must be a uint8 or uint16 ndarray as returned by act_quant, "
                         f"found {getattr(codes, 'dtype', type(codes).__name__)}")
    clip_t = _clip_value("act_quant_from_codes", np.empty(0, dtype), bits, clip)
    if codes.dtype != _code_dtype(bits):
        raise DTypeError(f"codes of {bits}-bit activations are {np.dtype(_code_dtype(bits))}, "
                         f"found {codes.dtype}")
    if not (math.isfinite(clip_t) and clip_t > 0):
        return _invalid_clip_output(codes.shape, dtype, clip_t)
    clip_t, s = _step("act_quant_from_codes", np.empty(0, dtype), bits, clip)
    codes = np.ascontiguousarray(codes)
    y = np.empty(codes.shape, dtype=dtype)
    _k.act_dequant(codes.reshape(-1), s, y.reshape(-1))
    return y


def act_quant_vjp(gy, x, clip):
    """PACT straight-through VJP of :func:`act_quant` (Choi et al. 2018).

    ``gx = gy`` where ``0 <= x <= clip`` and 0 elsewhere (also where x is NaN);
    ``gclip = sum(gy[x > clip])`` -- the rounding is treated as the identity, so inside
    the range neither gradient sees the quantisation step.

    Parameters
    ----------
    gy : ndarray, shape and dtype of ``x``
    x : ndarray, float32 or float64, the forward input
    clip : float > 0, the forward clip

    Returns
    -------
    gx : ndarray, shape and dtype of ``x``
    gclip : numpy scalar of ``x``'s dtype (accumulated in float64)
    """
    x = as_float("x", x)
    gy = grad_like("gy", gy, x.shape, x.dtype)
    clip_t, _ = _step("act_quant_vjp", x, 1, clip)
    gx = np.empty_like(x)
    part = np.empty(-(-x.size // _e.CHUNK), dtype=np.float64)
    _e.act_quant_bwd(gy.reshape(-1), x.reshape(-1), clip_t, gx.reshape(-1), part)
    return gx, x.dtype.type(part.sum())
