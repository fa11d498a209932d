"""Shape-only ops: concatenation, flattening in PyTorch's NCHW order, and the strided
subsample with channel zero-padding of option-A ResNet shortcuts."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ._check import as_float, grad_like, like


def concat(xs, axis=-1):
    """Concatenate arrays of one dtype along ``axis`` (channels by default).

    Parameters
    ----------
    xs : sequence of ndarray, float32 or float64, equal shapes except along ``axis``

    Returns
    -------
    y : ndarray
    """
    xs = list(xs)
    if not xs:
        raise ShapeError("concat needs at least one array, found an empty list")
    first = as_float("xs[0]", xs[0])
    xs = [first] + [like(f"xs[{i}]", a, first) for i, a in enumerate(xs[1:], 1)]
    try:
        return np.concatenate(xs, axis=axis)
    except (ValueError, np.exceptions.AxisError):
        raise ShapeError(f"concat along axis {axis}: shapes {[a.shape for a in xs]} must agree "
                         "on every other axis") from None


def concat_vjp(gy, sizes, axis=-1):
    """Split ``gy`` back into the pieces of :func:`concat`.

    Parameters
    ----------
    gy : ndarray
    sizes : sequence of int, each input's extent along ``axis``

    Returns
    -------
    list of ndarray, views of ``gy``
    """
    gy = as_float("gy", gy)
    sizes = [int(s) for s in sizes]
    if sum(sizes) != gy.shape[axis]:
        raise ShapeError(f"concat_vjp: sizes {sizes} sum to {sum(sizes)} but gy has "
                         f"{gy.shape[axis]} along axis {axis}; pass the inputs' sizes")
    return np.split(gy, np.cumsum(sizes)[:-1], axis=axis)


def flatten(x):
    """Flatten to (N, features) in NCHW order, like ``torch.flatten(x_nchw, 1)``.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C) NHWC, or (N, F) (returned unchanged)

    Returns
    -------
    y : ndarray, shape (N, C*H*W), C-contiguous
    """
    x = as_float("x", x, (2, 4))
    if x.ndim == 2:
        return x
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(x.shape[0], -1)


def flatten_vjp(gy, x_shape):
    """VJP of :func:`flatten`: reshape to NCHW then transpose back to NHWC.

    Returns
    -------
    gx : ndarray, shape ``x_shape``
    """
    x_shape = tuple(int(v) for v in x_shape)
    if len(x_shape) not in (2, 4):
        raise ShapeError(f"flatten_vjp: x_shape must have 2 or 4 entries, found {x_shape}")
    gy = grad_like("gy", gy, (x_shape[0], int(np.prod(x_shape[1:]))), as_float("gy", gy).dtype)
    if len(x_shape) == 2:
        return gy
    N, H, W, C = x_shape
    return np.ascontiguousarray(gy.reshape(N, C, H, W).transpose(0, 2, 3, 1))


def _subsample_geometry(name, shape, stride, pad_channels):
    sh, sw = (int(v) for v in stride)
    before, after = (int(v) for v in pad_channels)
    if sh < 1 or sw < 1 or before < 0 or after < 0:
        raise ShapeError(f"{name}: stride {tuple(stride)} must be >= 1 and pad_channels "
                         f"{tuple(pad_channels)} >= 0")
    n, h, w, c = shape
    return sh, sw, before, after, (n, -(-h // sh), -(-w // sw), before + c + after)


def subsample_pad(x, stride, pad_channels):
    """Keep every ``stride``-th row and column from the first, and add zero channels:
    ``y[n, i, j, before + c] = x[n, i*sh, j*sw, c]``, every other channel 0 (PyTorch:
    ``F.pad(x[:, :, ::sh, ::sw], (0, 0, 0, 0, before, after))``, the option-A shortcut).

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C), float32 or float64
    stride : (int, int)
    pad_channels : (int, int)
        Zero channels added before and after the input's.

    Returns
    -------
    y : ndarray, shape (N, ceil(H/sh), ceil(W/sw), before + C + after), x's dtype
    """
    x = as_float("x", x, 4)
    sh, sw, before, after, shape = _subsample_geometry("subsample_pad", x.shape, stride,
                                                       pad_channels)
    y = np.zeros(shape, x.dtype)
    y[..., before:before + x.shape[3]] = x[:, ::sh, ::sw, :]
    return y


def subsample_pad_vjp(gy, x_shape, stride, pad_channels):
    """VJP of :func:`subsample_pad`: the kept positions receive ``gy``'s input channels,
    the skipped rows/columns 0.

    Returns
    -------
    gx : ndarray, shape ``x_shape``
    """
    gy = as_float("gy", gy, 4)
    x_shape = tuple(int(v) for v in x_shape)
    if len(x_shape) != 4:
        raise ShapeError(f"subsample_pad_vjp: x_shape must be (N, H, W, C), found {x_shape}")
    sh, sw, before, _, shape = _subsample_geometry("subsample_pad_vjp", x_shape, stride,
                                                   pad_channels)
    if gy.shape != shape:
        raise ShapeError(f"subsample_pad_vjp: gy has shape {gy.shape}, expected {shape} for "
                         f"x_shape {x_shape}")
    gx = np.zeros(x_shape, gy.dtype)
    gx[:, ::sh, ::sw, :] = gy[..., before:before + x_shape[3]]
    return gx
