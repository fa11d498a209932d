"""Differentiable versions of :mod:`numharden.ops` (imported as ``F``).

Every function accepts Tensors or plain arrays. When grad mode is on and some input
is a Tensor with ``requires_grad``, the result is a Tensor whose ``_backward`` calls the
op's VJP; otherwise the result is a plain ndarray and nothing is recorded, so inference
runs the very same forward code without autograd overhead.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from .tensor import Tensor, accumulate, data_of, grad_enabled, needs_grad


def _result(value, parents, backward):
    if grad_enabled() and any(needs_grad(p) for p in parents):
        return Tensor(value, requires_grad=True, _parents=tuple(parents), _backward=backward)
    return value


# --- elementwise algebra --------------------------------------------------------------

def add(a, b):
    """a + b with broadcasting."""
    out = np.add(data_of(a), data_of(b))

    def backward(g):
        accumulate(a, g)
        accumulate(b, g)
    return _result(out, (a, b), backward)


def mul(a, b):
    """Elementwise a * b with broadcasting."""
    ad, bd = data_of(a), data_of(b)

    def backward(g):
        accumulate(a, g * bd)
        accumulate(b, g * ad)
    return _result(ad * bd, (a, b), backward)


def scale(a, c: float):
    """c * a for a Python scalar c."""
    ad = data_of(a)
    return _result(ad * ad.dtype.type(c), (a,), lambda g: accumulate(a, g * g.dtype.type(c)))


def sum(a):  # noqa: A001 - mirrors numpy
    """Sum of all elements, a 0-d result."""
    ad = data_of(a)
    return _result(np.asarray(ad.sum(dtype=ad.dtype)), (a,),
                   lambda g: accumulate(a, np.broadcast_to(g, ad.shape).copy()))


def abs_sum(a):
    """sum(|a|), the L1 norm (subgradient 0 at 0)."""
    ad = data_of(a)
    return _result(np.asarray(np.abs(ad).sum(dtype=ad.dtype)), (a,),
                   lambda g: accumulate(a, g * np.sign(ad)))


def reshape(a, shape):
    ad = data_of(a)
    return _result(ad.reshape(shape), (a,), lambda g: accumulate(a, g.reshape(ad.shape)))


def permute(a, axes):
    """np.transpose(a, axes) (returned C-contiguous, as conv kernels need)."""
    ad = data_of(a)
    inverse = np.argsort(axes)
    return _result(np.ascontiguousarray(ad.transpose(axes)), (a,),
                   lambda g: accumulate(a, np.ascontiguousarray(g.transpose(inverse))))


# --- layers -----------------------------------------------------------------------------

def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """2-D convolution, x (N,H,W,Ci) NHWC, w (KH,KW,Ci/groups,Co) HWIO, b (Co,)."""
    xd, wd, bd = data_of(x), data_of(w), data_of(b)
    y = ops.conv2d(xd, wd, bd, stride, padding, dilation, groups)

    def backward(g):
        gx, gw, gb = ops.conv2d_vjp(g, xd, wd, stride, padding, dilation, groups,
                                    need_x=needs_grad(x), need_w=needs_grad(w),
                                    need_b=needs_grad(b))
        accumulate(x, gx)
        accumulate(w, gw)
        accumulate(b, gb)
    return _result(y, (x, w, b), backward)


def linear(x, w, b=None):
    """x @ w.T + b, x (N,F), w (O,F)."""
    xd, wd, bd = data_of(x), data_of(w), data_of(b)

    def backward(g):
        gx, gw, gb = ops.linear_vjp(g, xd, wd, need_x=needs_grad(x), need_w=needs_grad(w),
                                    need_b=needs_grad(b))
        accumulate(x, gx)
        accumulate(w, gw)
        accumulate(b, gb)
    return _result(ops.linear(xd, wd, bd), (x, w, b), backward)


def channel_affine(x, a, c):
    """x * a + c per channel (last axis): batch norm in inference form."""
    xd, ad, cd = data_of(x), data_of(a), data_of(c)
    axes = tuple(range(xd.ndim - 1))

    def backward(g):
        accumulate(x, g * ad)
        if needs_grad(a):
            accumulate(a, (g * xd).sum(axis=axes))
        if needs_grad(c):
            accumulate(c, g.sum(axis=axes))
    return _result(ops.channel_affine(xd, ad, cd), (x, a, c), backward)


def batchnorm_train(x, gamma, beta, eps):
    """Batch norm with batch statistics; returns (y, batch mean, biased batch variance)."""
    y, mean, var, ctx = ops.batchnorm_train(data_of(x), data_of(gamma), data_of(beta), eps)

    def backward(g):
        gx, gg, gb = ops.batchnorm_train_vjp(g, ctx)
        accumulate(x, gx)
        accumulate(gamma, gg)
        accumulate(beta, gb)
    return _result(y, (x, gamma, beta), backward), mean, var


def _unary(fwd, vjp, x, *args):
    xd = data_of(x)
    return _result(fwd(xd, *args), (x,), lambda g: accumulate(x, vjp(g, xd, *args)))


def relu(x):
    return _unary(ops.relu, ops.relu_vjp, x)


def relu6(x):
    return _unary(ops.relu6, ops.relu6_vjp, x)


def hardtanh(x, lo, hi):
    return _unary(ops.hardtanh, ops.hardtanh_vjp, x, lo, hi)


def maxpool2d(x, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    xd = data_of(x)
    track = grad_enabled() and needs_grad(x)  # indices only when a backward may need them
    y, argmax = ops.maxpool2d(xd, kernel, stride, padding, dilation, ceil_mode,
                              with_argmax=track)
    return _result(y, (x,), lambda g: accumulate(x, ops.maxpool2d_vjp(g, argmax, xd.shape)))


def avgpool2d(x, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    xd = data_of(x)
    y = ops.avgpool2d(xd, kernel, stride, padding, ceil_mode, count_include_pad)
    return _result(y, (x,), lambda g: accumulate(x, ops.avgpool2d_vjp(
        g, xd.shape, kernel, stride, padding, ceil_mode, count_include_pad)))


def global_avgpool(x):
    xd = data_of(x)
    return _result(ops.global_avgpool(xd), (x,),
                   lambda g: accumulate(x, ops.global_avgpool_vjp(g, xd.shape)))


def concat(xs, axis=-1):
    datas = [data_of(t) for t in xs]
    sizes = [d.shape[axis] for d in datas]

    def backward(g):
        for t, gt in zip(xs, ops.concat_vjp(g, sizes, axis)):
            accumulate(t, gt)
    return _result(ops.concat(datas, axis), tuple(xs), backward)


def flatten(x):
    xd = data_of(x)
    return _result(ops.flatten(xd), (x,), lambda g: accumulate(x, ops.flatten_vjp(g, xd.shape)))


def subsample_pad(x, stride, pad_channels):
    xd = data_of(x)
    return _result(ops.subsample_pad(xd, stride, pad_channels), (x,), lambda g: accumulate(
        x, ops.subsample_pad_vjp(g, xd.shape, stride, pad_channels)))


def log_softmax(z):
    y = ops.log_softmax(data_of(z))
    return _result(y, (z,), lambda g: accumulate(z, ops.log_softmax_vjp(g, y)))


def cross_entropy(logits, labels):
    """Mean cross-entropy of ``logits`` (N,K) against integer ``labels`` (N,); 0-d result."""
    loss, probs = ops.cross_entropy(data_of(logits), labels)
    return _result(np.asarray(loss), (logits,),
                   lambda g: accumulate(logits, ops.cross_entropy_vjp(g, probs, labels)))


# --- quantisation (straight-through estimators) ---------------------------------------

def fake_quant_weight(w, fmt, axis=None):
    """Quantise-dequantise ``w`` with format ``fmt``; gradient passes straight through
    (zeroed where a fixed-point format saturates)."""
    wd = data_of(w)
    wq = ops.fake_quant_weight(wd, fmt, axis)

    def backward(g):
        if fmt.kind == "fixed":
            lo = -(2.0 ** (fmt.int_bits - 1))
            g = g * ((wd >= lo) & (wd <= -lo - 2.0 ** -fmt.frac_bits))
        accumulate(w, g)
    return _result(wq, (w,), backward)


def act_quant(x, bits, clip):
    """Unsigned ``bits``-bit activation quantisation with clip value ``clip`` (PACT STE).

    Returns the dequantised activations; ``clip`` (shape (1,)) may be a learnable Tensor."""
    xd, cd = data_of(x), np.asarray(data_of(clip))
    c = float(cd.reshape(-1)[0])
    y, _ = ops.act_quant(xd, bits, c, codes=False)

    def backward(g):
        gx, gclip = ops.act_quant_vjp(g, xd, c)
        accumulate(x, gx)
        accumulate(clip, np.full(cd.shape, gclip, dtype=cd.dtype))
    return _result(y, (x, clip), backward)
