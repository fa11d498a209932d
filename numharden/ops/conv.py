"""Convolution and fully connected layers with their VJPs (NHWC activations, HWIO weights)."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..kernels import conv as _k
from ._check import as_float, grad_like, ints, like, out_size


def _conv_args(x, w, b, stride, padding, dilation, groups):
    x = as_float("x", x, 4)
    w = like("w", w, x)
    if w.ndim != 4:
        raise ShapeError(f"w must be HWIO (KH, KW, Ci/groups, Co), found shape {w.shape}; "
                         "convert a PyTorch (O, I, KH, KW) weight with w.transpose(2, 3, 1, 0)")
    (groups,) = ints("groups", groups, 1, 1)
    KH, KW, Cig, Co = w.shape
    Ci = x.shape[3]
    if Ci % groups or Co % groups or Cig * groups != Ci:
        raise ShapeError(f"conv2d: x has {Ci} channels and w has shape {w.shape} with "
                         f"groups={groups}; need Ci = groups * w.shape[2] ({groups} * {Cig}) "
                         "and Co divisible by groups")
    if b is not None:
        b = like("b", b, x, (Co,))
    stride = ints("stride", stride, 2, 1)
    padding = ints("padding", padding, 4, 0)
    dilation = ints("dilation", dilation, 2, 1)
    Ho = out_size("conv2d height", x.shape[1], padding[0], padding[1], KH, stride[0], dilation[0])
    Wo = out_size("conv2d width", x.shape[2], padding[2], padding[3], KW, stride[1], dilation[1])
    return x, w, b, stride, padding, dilation, groups, Ho, Wo


def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """2-D cross-correlation, PyTorch ``conv2d`` semantics in NHWC.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, Ci), float32 or float64
    w : ndarray, shape (KH, KW, Ci/groups, Co), HWIO, dtype of ``x``
    b : ndarray, shape (Co,), dtype of ``x``, optional
    stride, dilation : int or (int, int)
    padding : int or (top, bottom, left, right), zero padding
    groups : int
        ``Ci`` and ``Co`` must be divisible by it; ``groups == Ci`` is depthwise.

    Returns
    -------
    y : ndarray, shape (N, Ho, Wo, Co), dtype of ``x``
        ``Ho = (H + top + bottom - dilation*(KH-1) - 1) // stride + 1``, likewise ``Wo``.
    """
    x, w, b, s, p, d, groups, Ho, Wo = _conv_args(x, w, b, stride, padding, dilation, groups)
    y = np.empty((x.shape[0], Ho, Wo, w.shape[3]), dtype=x.dtype)
    if b is None:
        b = np.zeros(w.shape[3], dtype=x.dtype)
    _k.conv_fwd_generic(x, w, b, y, s[0], s[1], p[0], p[2], d[0], d[1], groups)
    return y


def conv2d_vjp(gy, x, w, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1,
               need_x=True, need_w=True, need_b=True):
    """Vector-Jacobian product of :func:`conv2d`.

    Parameters
    ----------
    gy : ndarray, shape (N, Ho, Wo, Co)
        Gradient of the output, dtype of ``x``.
    x, w, stride, padding, dilation, groups
        As given to :func:`conv2d`.
    need_x, need_w, need_b : bool
        Which gradients to compute; the others are returned as ``None``.

    Returns
    -------
    gx : ndarray, shape (N, H, W, Ci) or None
    gw : ndarray, shape (KH, KW, Ci/groups, Co) (HWIO) or None
    gb : ndarray, shape (Co,) or None
    """
    x, w, _, s, p, d, groups, Ho, Wo = _conv_args(x, w, None, stride, padding, dilation, groups)
    gy = grad_like("gy", gy, (x.shape[0], Ho, Wo, w.shape[3]), x.dtype)
    gx = gw = gb = None
    if need_x:
        gx = np.empty_like(x)
        wt = np.ascontiguousarray(w.transpose(0, 1, 3, 2))
        _k.conv_bwd_input(gy, wt, gx, s[0], s[1], p[0], p[2], d[0], d[1], groups)
    if need_w:
        gw = np.empty_like(w)
        _k.conv_bwd_weight(gy, x, gw, s[0], s[1], p[0], p[2], d[0], d[1], groups)
    if need_b:
        gb = gy.reshape(-1, gy.shape[3]).sum(axis=0)
    return gx, gw, gb


def _linear_args(x, w, b):
    x = as_float("x", x, 2)
    w = like("w", w, x)
    if w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise ShapeError(f"linear: w must have shape (O, {x.shape[1]}) for x of shape "
                         f"{x.shape}, found {w.shape}; flatten x first or fix in_features")
    if b is not None:
        b = like("b", b, x, (w.shape[0],))
    return x, w, b


def linear(x, w, b=None):
    """Fully connected layer ``y = x @ w.T + b`` (PyTorch ``linear``).

    Parameters
    ----------
    x : ndarray, shape (N, F), float32 or float64
    w : ndarray, shape (O, F), dtype of ``x``
    b : ndarray, shape (O,), optional

    Returns
    -------
    y : ndarray, shape (N, O), dtype of ``x``
    """
    x, w, b = _linear_args(x, w, b)
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_vjp(gy, x, w, need_x=True, need_w=True, need_b=True):
    """Vector-Jacobian product of :func:`linear`.

    Returns
    -------
    gx : ndarray, shape (N, F) or None
    gw : ndarray, shape (O, F) or None
    gb : ndarray, shape (O,) or None
    """
    x, w, _ = _linear_args(x, w, None)
    gy = grad_like("gy", gy, (x.shape[0], w.shape[0]), x.dtype)
    gx = gy @ w if need_x else None
    gw = gy.T @ x if need_w else None
    gb = gy.sum(axis=0) if need_b else None
    return gx, gw, gb
