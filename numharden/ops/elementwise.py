"""Activations, per-channel affine (batch norm at inference) and training batch norm."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, ShapeError
from ..kernels import elementwise as _e
from ._check import as_float, colsum, grad_like, like


def _clamp(x, lo, hi):
    y = np.empty_like(x)
    kernel = _e.clamp if x.size >= _e.SERIAL_BELOW else _e.clamp_serial
    kernel(x.reshape(-1), x.dtype.type(lo), x.dtype.type(hi), y.reshape(-1))
    return y


def relu(x):
    """max(x, 0) elementwise; NaN propagates. x : ndarray float32/float64, any shape."""
    return _clamp(as_float("x", x), 0.0, np.inf)


def _window_vjp(gy, x, lo, hi):
    x = as_float("x", x)
    gy = grad_like("gy", gy, x.shape, x.dtype)
    gx = np.empty_like(x)
    _e.window_vjp(gy.reshape(-1), x.reshape(-1), x.dtype.type(lo), x.dtype.type(hi),
                  gx.reshape(-1))
    return gx


def relu_vjp(gy, x):
    """gy where x > 0 else 0 (zero at x == 0, as PyTorch)."""
    return _window_vjp(gy, x, 0.0, np.inf)


def _bounds(lo, hi):
    lo, hi = float(lo), float(hi)
    if not lo < hi:
        raise ConfigError(f"hardtanh needs lo < hi, found lo={lo}, hi={hi}; swap them")
    return lo, hi


def hardtanh(x, lo, hi):
    """clip(x, lo, hi) elementwise (``lo < hi``); NaN propagates."""
    x = as_float("x", x)
    lo, hi = _bounds(lo, hi)
    return _clamp(x, lo, hi)


def hardtanh_vjp(gy, x, lo, hi):
    """gy where lo < x < hi else 0 (zero on the boundaries, as PyTorch)."""
    lo, hi = _bounds(lo, hi)
    return _window_vjp(gy, x, lo, hi)


def relu6(x):
    """clip(x, 0, 6) elementwise, ``hardtanh(x, 0, 6)``."""
    return hardtanh(x, 0.0, 6.0)


def relu6_vjp(gy, x):
    """gy where 0 < x < 6 else 0."""
    return hardtanh_vjp(gy, x, 0.0, 6.0)


def channel_affine(x, a, c):
    """``x * a + c`` per channel of the last axis (batch norm in inference form).

    Parameters
    ----------
    x : ndarray, shape (..., C), float32 or float64
    a, c : ndarray, shape (C,), dtype of ``x``

    Returns
    -------
    y : ndarray, shape of ``x``
    """
    x = as_float("x", x)
    C = x.shape[-1]
    a = like("a", a, x, (C,))
    c = like("c", c, x, (C,))
    y = np.empty_like(x)
    _e.channel_affine(x.reshape(-1, C), a, c, y.reshape(-1, C))
    return y


@dataclass
class BatchNormContext:
    """What :func:`batchnorm_train_vjp` needs from the forward pass."""

    xhat: np.ndarray      # normalised input, shape of x
    gamma: np.ndarray     # (C,)
    inv_std: np.ndarray   # (C,), 1 / sqrt(var_biased + eps)


def batchnorm_train(x, gamma, beta, eps):
    """Batch normalisation with batch statistics over every axis but the last.

    ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` with the biased variance (as
    PyTorch normalises in training mode; running-variance updates use the unbiased
    one, ``var * M / (M - 1)``, which is the caller's business).

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C) or (N, C), float32 or float64
    gamma, beta : ndarray, shape (C,), dtype of ``x``
    eps : float > 0

    Returns
    -------
    y : ndarray, shape of ``x``
    mean, var_biased : ndarray, shape (C,), dtype of ``x``
    ctx : BatchNormContext, for :func:`batchnorm_train_vjp`
    """
    x = as_float("x", x, (2, 4))
    C = x.shape[-1]
    gamma = like("gamma", gamma, x, (C,))
    beta = like("beta", beta, x, (C,))
    if not float(eps) > 0:
        raise ConfigError(f"batch norm eps must be > 0, found {eps}; use e.g. 1e-5")
    flat = x.reshape(-1, C)
    if flat.shape[0] < 1:
        raise ShapeError("batchnorm_train needs at least one value per channel, x has "
                         f"shape {x.shape}")
    M = flat.shape[0]
    mean = colsum(flat) / M
    centered = flat - mean.astype(x.dtype)
    centered *= centered
    var = colsum(centered) / M
    inv_std = (1.0 / np.sqrt(var + float(eps))).astype(x.dtype)
    mean, var = mean.astype(x.dtype), var.astype(x.dtype)
    xhat = (x - mean) * inv_std
    y = xhat * gamma
    y += beta
    return y, mean, var, BatchNormContext(xhat, gamma, inv_std)


def batchnorm_train_vjp(gy, ctx):
    """VJP of :func:`batchnorm_train` (statistics differentiated too).

    ``gx = gamma * inv_std * (gy - mean(gy) - xhat * mean(gy * xhat))`` per channel.

    Returns
    -------
    gx : ndarray, shape of x
    ggamma, gbeta : ndarray, shape (C,)
    """
    if not isinstance(ctx, BatchNormContext):
        raise ConfigError(f"ctx must be the BatchNormContext returned by batchnorm_train, "
                          f"found {type(ctx).__name__}")
    xhat = ctx.xhat
    gy = grad_like("gy", gy, xhat.shape, xhat.dtype)
    C = xhat.shape[-1]
    g2, h2 = gy.reshape(-1, C), xhat.reshape(-1, C)
    gbeta = colsum(g2).astype(gy.dtype)
    ggamma = colsum(g2 * h2).astype(gy.dtype)
    M = h2.shape[0]
    gx = gy - gbeta / xhat.dtype.type(M)
    gx -= xhat * (ggamma / xhat.dtype.type(M))
    gx *= ctx.gamma * ctx.inv_std
    return gx, ggamma, gbeta
