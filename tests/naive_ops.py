"""Slow, obviously correct loop twins of numharden.ops (float64, NHWC, HWIO).

Written from the PyTorch definitions, independently of the kernels: explicit loops over
every output element and every tap of its window, padding handled by bounds checks.
"""

from __future__ import annotations

import math

import numpy as np


def out_len(size, lo, hi, k, s, d, ceil_mode=False):
    span = size + lo + hi - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + lo:
        out -= 1
    return out


def conv2d(x, w, b, stride, padding, dilation, groups):
    N, H, W, Ci = x.shape
    KH, KW, Cig, Co = w.shape
    Cog = Co // groups
    Ho = out_len(H, padding[0], padding[1], KH, stride[0], dilation[0])
    Wo = out_len(W, padding[2], padding[3], KW, stride[1], dilation[1])
    y = np.zeros((N, Ho, Wo, Co))
    for n in range(N):
        for oh in range(Ho):
            for ow in range(Wo):
                for co in range(Co):
                    g = co // Cog
                    acc = 0.0 if b is None else float(b[co])
                    for kh in range(KH):
                        for kw in range(KW):
                            ih = oh * stride[0] - padding[0] + kh * dilation[0]
                            iw = ow * stride[1] - padding[2] + kw * dilation[1]
                            if 0 <= ih < H and 0 <= iw < W:
                                for ci in range(Cig):
                                    acc += (float(x[n, ih, iw, g * Cig + ci])
                                            * float(w[kh, kw, ci, co]))
                    y[n, oh, ow, co] = acc
    return y


def _windows(H, W, kernel, stride, padding, dilation, ceil_mode):
    Ho = out_len(H, padding[0], padding[1], kernel[0], stride[0], dilation[0], ceil_mode)
    Wo = out_len(W, padding[2], padding[3], kernel[1], stride[1], dilation[1], ceil_mode)
    return Ho, Wo


def maxpool2d(x, kernel, stride, padding, dilation, ceil_mode):
    """Returns (y, argmax); argmax = ih*W+iw of the first maximum in row-major order."""
    N, H, W, C = x.shape
    Ho, Wo = _windows(H, W, kernel, stride, padding, dilation, ceil_mode)
    y = np.zeros((N, Ho, Wo, C))
    arg = np.zeros((N, Ho, Wo, C), dtype=np.int64)
    for n in range(N):
        for oh in range(Ho):
            for ow in range(Wo):
                for c in range(C):
                    best, where = -math.inf, None
                    for kh in range(kernel[0]):
                        for kw in range(kernel[1]):
                            ih = oh * stride[0] - padding[0] + kh * dilation[0]
                            iw = ow * stride[1] - padding[2] + kw * dilation[1]
                            if 0 <= ih < H and 0 <= iw < W:
                                v = float(x[n, ih, iw, c])
                                if where is None:
                                    where = ih * W + iw
                                if v > best or math.isnan(v):
                                    best, where = v, ih * W + iw
                    y[n, oh, ow, c] = best
                    arg[n, oh, ow, c] = where
    return y, arg


def avgpool2d(x, kernel, stride, padding, ceil_mode, count_include_pad):
    N, H, W, C = x.shape
    Ho, Wo = _windows(H, W, kernel, stride, padding, (1, 1), ceil_mode)
    y = np.zeros((N, Ho, Wo, C))
    for n in range(N):
        for oh in range(Ho):
            for ow in range(Wo):
                for c in range(C):
                    total, inside, padded = 0.0, 0, 0
                    for kh in range(kernel[0]):
                        for kw in range(kernel[1]):
                            ih = oh * stride[0] - padding[0] + kh
                            iw = ow * stride[1] - padding[2] + kw
                            in_padded = (-padding[0] <= ih < H + padding[1]
                                         and -padding[2] <= iw < W + padding[3])
                            padded += in_padded
                            if 0 <= ih < H and 0 <= iw < W:
                                total += float(x[n, ih, iw, c])
                                inside += 1
                    y[n, oh, ow, c] = total / (padded if count_include_pad else inside)
    return y


def batchnorm_train(x, gamma, beta, eps):
    C = x.shape[-1]
    flat = x.reshape(-1, C).astype(np.float64)
    y = np.empty_like(flat)
    mean = np.zeros(C)
    var = np.zeros(C)
    for c in range(C):
        col = flat[:, c]
        m = sum(col) / len(col)
        v = sum((t - m) ** 2 for t in col) / len(col)
        mean[c], var[c] = m, v
        for i in range(len(col)):
            y[i, c] = (col[i] - m) / math.sqrt(v + eps) * gamma[c] + beta[c]
    return y.reshape(x.shape), mean, var


def log_softmax(z):
    out = np.empty(z.shape)
    for i in range(z.shape[0]):
        row = [float(v) for v in z[i]]
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        for k, v in enumerate(row):
            out[i, k] = v - lse
    return out


def cross_entropy(z, labels):
    lsm = log_softmax(z)
    return -sum(lsm[i, labels[i]] for i in range(len(labels))) / len(labels)


def flatten(x):
    N, H, W, C = x.shape
    out = np.empty((N, C * H * W))
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    out[n, (c * H + h) * W + w] = x[n, h, w, c]
    return out


def subsample_pad(x, stride, pad_channels):
    N, H, W, C = x.shape
    (sh, sw), (before, after) = stride, pad_channels
    Ho, Wo = (H + sh - 1) // sh, (W + sw - 1) // sw
    out = np.zeros((N, Ho, Wo, before + C + after), x.dtype)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    out[n, i, j, before + c] = x[n, i * sh, j * sw, c]
    return out


def act_quant(x, bits, clip):
    """Returns (y, codes) computed one element at a time in x's dtype."""
    t = x.dtype.type
    s = t(clip) / t(2 ** bits - 1)
    flat = x.reshape(-1)
    codes = np.zeros(flat.size, dtype=np.int64)
    for i, v in enumerate(flat):
        v = min(max(v, t(0)), t(clip)) if not math.isnan(v) else t(0)
        codes[i] = int(np.rint(v / s))
    y = np.array([t(c) * s for c in codes], dtype=x.dtype)
    return y.reshape(x.shape), codes.reshape(x.shape)


# --- central finite differences (float64) -----------------------------------------------

def numeric_vjp(f, x, u, eps=1e-6):
    """Elementwise: g[i] = <u, (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)>."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up = np.asarray(f(x), dtype=np.float64)
        flat[i] = keep - eps
        down = np.asarray(f(x), dtype=np.float64)
        flat[i] = keep
        gflat[i] = np.sum(u * (up - down)) / (2 * eps)
    return g


def directional(f, x, u, v, eps=1e-6):
    """<u, (f(x + eps v) - f(x - eps v)) / (2 eps)>, the derivative along direction v."""
    up = np.asarray(f(x + eps * v), dtype=np.float64)
    down = np.asarray(f(x - eps * v), dtype=np.float64)
    return float(np.sum(u * (up - down)) / (2 * eps))
