"""Log-softmax and cross-entropy with their VJPs."""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ._check import as_float, grad_like


def log_softmax(z):
    """Numerically stable log-softmax over the last axis.

    Parameters
    ----------
    z : ndarray, shape (N, K), float32 or float64

    Returns
    -------
    y : ndarray, shape (N, K), dtype of ``z``
    """
    z = as_float("z", z, 2)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def log_softmax_vjp(gy, y):
    """VJP of :func:`log_softmax` given its output ``y``: ``gy - exp(y) * sum(gy)``."""
    y = as_float("y", y, 2)
    gy = grad_like("gy", gy, y.shape, y.dtype)
    return gy - np.exp(y) * gy.sum(axis=1, keepdims=True)


def _labels(labels, N, K):
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise DTypeError(f"labels must be integers, found dtype {labels.dtype}; "
                         "pass class indices, e.g. labels.astype(np.int64)")
    if labels.shape != (N,):
        raise ShapeError(f"labels must have shape ({N},) to match the logits, found {labels.shape}")
    if N and (labels.min() < 0 or labels.max() >= K):
        raise ShapeError(f"labels must lie in [0, {K}), found range "
                         f"[{labels.min()}, {labels.max()}]; check the class count")
    return labels.astype(np.intp)


def cross_entropy(logits, labels):
    """Mean negative log-likelihood of log-softmax (PyTorch ``cross_entropy``).

    Parameters
    ----------
    logits : ndarray, shape (N, K), float32 or float64, N >= 1
    labels : ndarray, shape (N,), integer in [0, K)

    Returns
    -------
    loss : float scalar of the logits' dtype (numpy scalar)
    probs : ndarray, shape (N, K), softmax of ``logits``, for the VJP
    """
    logits = as_float("logits", logits, 2)
    N, K = logits.shape
    if N == 0:
        raise ShapeError("cross_entropy needs at least one example, found an empty batch")
    labels = _labels(labels, N, K)
    lsm = log_softmax(logits)
    loss = -lsm[np.arange(N), labels].mean(dtype=np.float64)
    return logits.dtype.type(loss), np.exp(lsm)


def cross_entropy_vjp(gloss, probs, labels):
    """VJP of :func:`cross_entropy`: ``gloss * (probs - onehot(labels)) / N``.

    Returns
    -------
    glogits : ndarray, shape (N, K), dtype of ``probs``
    """
    probs = as_float("probs", probs, 2)
    N, K = probs.shape
    labels = _labels(labels, N, K)
    g = probs.copy()
    g[np.arange(N), labels] -= 1
    g *= probs.dtype.type(float(np.asarray(gloss)) / N)
    return g
