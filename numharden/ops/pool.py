"""Pooling layers with their VJPs (NHWC), PyTorch semantics including ``ceil_mode``."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DTypeError, ShapeError
from ..kernels import pool as _k
from ._check import as_float, grad_like, ints, out_size


def _pool_args(name, x, kernel, stride, padding, dilation, ceil_mode):
    x = as_float("x", x, 4)
    k = ints("kernel", kernel, 2, 1)
    s = k if stride is None else ints("stride", stride, 2, 1)
    p = ints("padding", padding, 4, 0)
    d = ints("dilation", dilation, 2, 1)
    if max(p[0], p[1]) > k[0] // 2 or max(p[2], p[3]) > k[1] // 2:
        raise ConfigError(f"{name}: padding {p} exceeds half the kernel {k} (PyTorch's "
                          "limit, so every window holds an input element); reduce padding")
    Ho = out_size(f"{name} height", x.shape[1], p[0], p[1], k[0], s[0], d[0], bool(ceil_mode))
    Wo = out_size(f"{name} width", x.shape[2], p[2], p[3], k[1], s[1], d[1], bool(ceil_mode))
    return x, k, s, p, d, Ho, Wo


def maxpool2d(x, kernel, stride=None, padding=(0, 0, 0, 0), dilation=(1, 1), ceil_mode=False,
              *, with_argmax=True):
    """2-D max pooling, PyTorch ``max_pool2d`` semantics in NHWC.

    Padding is implicit ``-inf``. Ties go to the first maximum in row-major window
    order (the position PyTorch reports); a NaN in the window wins, as in PyTorch.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C), float32 or float64
    kernel, stride, dilation : int or (int, int); ``stride=None`` means ``kernel``
    padding : int or (top, bottom, left, right), each at most half the kernel
    ceil_mode : bool
        Round the output size up; the last window must still start inside the input
        or the top/left padding.
    with_argmax : bool, keyword-only
        ``False`` skips the indices (inference: half the memory traffic) and returns
        ``None`` in their place.

    Returns
    -------
    y : ndarray, shape (N, Ho, Wo, C), dtype of ``x``
    argmax : ndarray, shape (N, Ho, Wo, C), int64, or None
        Flat index ``ih * W + iw`` of the chosen element in its (H, W) plane.
    """
    x, k, s, p, d, Ho, Wo = _pool_args("maxpool2d", x, kernel, stride, padding, dilation,
                                       ceil_mode)
    y = np.empty((x.shape[0], Ho, Wo, x.shape[3]), dtype=x.dtype)
    arg = np.empty(y.shape if with_argmax else (0, 0, 0, 0), dtype=np.int64)
    kernel = _k.maxpool_fwd_f32 if x.dtype == np.float32 and x.shape[1] * x.shape[2] < 2 ** 24 \
        else _k.maxpool_fwd
    kernel(x, y, arg, k[0], k[1], s[0], s[1], p[0], p[2], d[0], d[1], bool(with_argmax))
    return y, (arg if with_argmax else None)


def maxpool2d_vjp(gy, argmax, x_shape):
    """VJP of :func:`maxpool2d`: each ``gy`` element goes to its argmax position.

    Parameters
    ----------
    gy : ndarray, shape (N, Ho, Wo, C), float32 or float64
    argmax : ndarray, shape (N, Ho, Wo, C), int64, as returned by :func:`maxpool2d`
    x_shape : tuple (N, H, W, C)

    Returns
    -------
    gx : ndarray, shape ``x_shape``, dtype of ``gy`` (overlapping windows accumulate)
    """
    gy = as_float("gy", gy, 4)
    argmax = np.ascontiguousarray(argmax)
    if argmax.dtype != np.int64:
        raise DTypeError(f"argmax must be int64 as returned by maxpool2d, found {argmax.dtype}")
    x_shape = tuple(int(v) for v in x_shape)
    if argmax.shape != gy.shape or len(x_shape) != 4 or x_shape[0] != gy.shape[0] \
            or x_shape[3] != gy.shape[3]:
        raise ShapeError(f"maxpool2d_vjp: gy {gy.shape}, argmax {argmax.shape} and x_shape "
                         f"{x_shape} disagree; pass the argmax and input shape of the forward")
    if argmax.size and (argmax.min() < 0 or argmax.max() >= x_shape[1] * x_shape[2]):
        raise ShapeError(f"argmax holds indices outside [0, {x_shape[1] * x_shape[2]}) for "
                         f"x_shape {x_shape}; pass the argmax of this forward")
    gx = np.empty(x_shape, dtype=gy.dtype)
    _k.maxpool_bwd(gy, argmax, gx)
    return gx


def _avg_args(x, kernel, stride, padding, ceil_mode):
    return _pool_args("avgpool2d", x, kernel, stride, padding, (1, 1), ceil_mode)


def avgpool2d(x, kernel, stride=None, padding=(0, 0, 0, 0), ceil_mode=False,
              count_include_pad=True):
    """2-D average pooling, PyTorch ``avg_pool2d`` semantics in NHWC.

    The divisor counts the window's elements inside the input, plus (when
    ``count_include_pad``) those in the zero padding; elements beyond the padding that a
    ``ceil_mode`` window overhangs are never counted.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C), float32 or float64
    kernel, stride : int or (int, int); ``stride=None`` means ``kernel``
    padding : int or (top, bottom, left, right), each at most half the kernel
    ceil_mode, count_include_pad : bool

    Returns
    -------
    y : ndarray, shape (N, Ho, Wo, C), dtype of ``x``
    """
    x, k, s, p, _, Ho, Wo = _avg_args(x, kernel, stride, padding, ceil_mode)
    y = np.empty((x.shape[0], Ho, Wo, x.shape[3]), dtype=x.dtype)
    _k.avgpool_fwd(x, y, k[0], k[1], s[0], s[1], p[0], p[1], p[2], p[3], bool(count_include_pad))
    return y


def avgpool2d_vjp(gy, x_shape, kernel, stride=None, padding=(0, 0, 0, 0), ceil_mode=False,
                  count_include_pad=True):
    """VJP of :func:`avgpool2d`.

    Parameters
    ----------
    gy : ndarray, shape (N, Ho, Wo, C)
    x_shape : tuple (N, H, W, C); other arguments as given to the forward.

    Returns
    -------
    gx : ndarray, shape ``x_shape``, dtype of ``gy``
    """
    gy = as_float("gy", gy, 4)
    probe = np.empty(tuple(int(v) for v in x_shape), dtype=gy.dtype)  # shape checks only
    _, k, s, p, _, Ho, Wo = _avg_args(probe, kernel, stride, padding, ceil_mode)
    gy = grad_like("gy", gy, (probe.shape[0], Ho, Wo, probe.shape[3]), probe.dtype)
    _k.avgpool_bwd(gy, probe, k[0], k[1], s[0], s[1], p[0], p[1], p[2], p[3],
                   bool(count_include_pad))
    return probe


def global_avgpool(x):
    """Mean over H and W.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C), float32 or float64

    Returns
    -------
    y : ndarray, shape (N, 1, 1, C), dtype of ``x``
    """
    x = as_float("x", x, 4)
    return x.mean(axis=(1, 2), keepdims=True, dtype=x.dtype)


def global_avgpool_vjp(gy, x_shape):
    """VJP of :func:`global_avgpool`: ``gy / (H*W)`` broadcast over the plane.

    Returns
    -------
    gx : ndarray, shape ``x_shape``, dtype of ``gy``
    """
    gy = as_float("gy", gy, 4)
    x_shape = tuple(int(v) for v in x_shape)
    if len(x_shape) != 4:
        raise ShapeError(f"global_avgpool_vjp: x_shape must be (N, H, W, C), found {x_shape}")
    N, H, W, C = x_shape
    gy = grad_like("gy", gy, (N, 1, 1, C), gy.dtype)
    gx = np.empty((N, H, W, C), dtype=gy.dtype)
    gx[...] = gy / gy.dtype.type(H * W)
    return gx
