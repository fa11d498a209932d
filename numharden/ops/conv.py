"""Convolution and fully connected layers with their VJPs (NHWC activations, HWIO weights)."""

from __future__ import annotations

import numpy as np

import numba

from .. import config
from ..errors import ConfigError, ShapeError
from ..kernels import conv as _k
from ..kernels import conv_fast as _f
from ..kernels import conv_grad as _g
from ..kernels import conv_thin as _thin
from ..kernels import conv_tiles as _t
from ..kernels import simd16 as _simd16
from ._check import as_float, colsum, grad_like, ints, like, out_size


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


def _act_range(act):
    """(apply, lo, hi) of a fused activation: None, 'relu', 'relu6' or (lo, hi)."""
    if act is None:
        return False, 0.0, 0.0
    if act == "relu":
        return True, 0.0, np.inf
    if act == "relu6":
        return True, 0.0, 6.0
    try:
        lo, hi = (float(v) for v in act)
    except (TypeError, ValueError):
        lo = hi = 0.0
    if isinstance(act, tuple) and lo < hi:
        return True, lo, hi
    raise ConfigError(f"act must be None, 'relu', 'relu6' or a (lo, hi) tuple with lo < hi "
                      f"(hardtanh), found {act!r}")


def _use_fast(x, Cog):
    """Register-blocked float32 kernel unless channels per group are too few to fill
    its 16-lane output tile (depthwise-like layers go to the generic kernel)."""
    return x.dtype == np.float32 and Cog >= 4


def _kernel(w, groups, d):
    """Which tile loop of conv_fast.conv_fwd runs this float32 layer: DENSE (one group,
    unit width dilation, kernel rows of at least FLAT_BELOW steps, whole 16-channel
    blocks), WIDE (DENSE with whole 32-channel blocks on CPUs with AVX-512F, unless
    config ``wide_kernels`` is 0) or GENERAL. Decided here once: the weight packing
    depends on it."""
    KW, Cig, Co = w.shape[1], w.shape[2], w.shape[3]
    if groups != 1 or d[1] != 1 or KW * Cig < _f.FLAT_BELOW or Co % _t.TILE_C:
        return _f.GENERAL
    if Co % _f.WIDE_C == 0 and _simd16.AVAILABLE and config.get("wide_kernels") != 0:
        return _f.WIDE
    return _f.DENSE


def _wide(w, groups, d):
    """Whether the AVX-512 kernel (6 x 32 tiles) runs this layer."""
    return _kernel(w, groups, d) == _f.WIDE


def _use_thin(x, w, groups, s):
    """Row-vectorised kernel for first layers (1-4 input channels, < 16 output channels,
    unit stride along the width), whose output tiles would leave most channel lanes of
    the fast kernel empty; only with finite weights (it multiplies padded zeros)."""
    return (x.dtype == np.float32 and groups == 1 and s[1] == 1 and x.shape[3] <= 4
            and w.shape[3] < 16 and bool(np.isfinite(w).all()))


_SCRATCH_BYTES = 256 * 1024  # weight-gradient scratch per chunk: stays in L2
_TASK_BYTES = 2048 * 1024  # padded input + output of a forward task: about L2 size


def _fast_plan(N, one, img_bytes):
    """(imgs, chunks) for conv_fast.conv_fwd: tasks of whole images -- several when they
    are small (``img_bytes``: padded input + output of one image; a task's should stay
    in L2), so each weight block is reused over many tiles -- unless the batch is too
    small to keep every thread busy; then each image's tiles are split in chunks.

    ``one`` is the tile table of one image. Pixels are tiled per tap class (interior,
    border strips, corners) across a task's images, so the number of images decides how
    many tile slots go empty: with 8x8 outputs one image leaves each corner tile 5/6
    empty, six images fill it. The tasks are dealt to the threads in contiguous runs
    (as conv_fwd does), so it also decides how even their loads are. Among the admissible
    counts the one whose busiest thread has the least tile work (slots x taps) wins, the
    larger on a tie (more reuse of each weight block)."""
    pix, count, taps = one[0], one[1], one[2]
    ntiles = pix.shape[0]
    threads = numba.get_num_threads()
    tasks_wanted = 4 * threads
    if N < tasks_wanted:
        return 1, max(1, min(ntiles, -(-tasks_wanted // max(N, 1))))
    cap = max(1, min(N // tasks_wanted, _TASK_BYTES // max(img_bytes, 1)))
    # pixels and taps per class (a class is a run of tiles with the same tap ranges)
    key = taps[:, 0] * 1_000_003 + taps[:, 1] * 10_007 + taps[:, 2] * 101 + taps[:, 3]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    n = np.add.reduceat(count, starts)
    cost = (taps[starts, 1] - taps[starts, 0]) * (taps[starts, 3] - taps[starts, 2])
    P = pix.shape[1]

    def work(imgs):  # tile slots x taps of a task of imgs images
        return int((-(-(imgs * n) // P) * cost).sum())

    best, best_span = 1, None
    for imgs in range(1, cap + 1):
        full, rest = divmod(N, imgs)
        loads = [work(imgs)] * full + ([work(rest)] if rest else [])
        bounds = [k * len(loads) // threads for k in range(threads + 1)]
        span = max(sum(loads[bounds[k]:bounds[k + 1]]) for k in range(threads))
        if best_span is None or span <= best_span:
            best, best_span = imgs, span
    return best, 1


_TILINGS: dict = {}  # (N, geometry, img_bytes, threads) -> _tiling result


def _tiling(N, geom, img_bytes):
    """(imgs, chunks, tile table, table of the last short group) for conv_fast.conv_fwd,
    memoised: a campaign calls the same layers with the same batch thousands of times."""
    key = (N, geom, img_bytes, numba.get_num_threads())
    hit = _TILINGS.get(key)
    if hit is None:
        imgs, chunks = _fast_plan(N, _t.tile_table(1, *geom), img_bytes)
        table = _t.tile_table(imgs, *geom)
        last = _t.tile_table(N % imgs, *geom) if N % imgs else table
        if len(_TILINGS) >= 512:
            _TILINGS.clear()
        hit = _TILINGS[key] = (imgs, chunks, table, last)
    return hit


def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, *,
           act=None, residual=None):
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
    act : None, 'relu', 'relu6' or (lo, hi), keyword-only
        Activation fused into the kernel's epilogue; equals applying
        :func:`relu` / :func:`relu6` / :func:`hardtanh` to the result (NaN propagates).
    residual : ndarray, shape of ``y``, dtype of ``x``, keyword-only, optional
        Added to the convolution (after the bias, before ``act``), as a residual block's
        ``act(conv(x) + b + residual)``; bit-identical to adding it afterwards.

    Returns
    -------
    y : ndarray, shape (N, Ho, Wo, Co), dtype of ``x``
        ``Ho = (H + top + bottom - dilation*(KH-1) - 1) // stride + 1``, likewise ``Wo``.

    Notes
    -----
    Taps that fall in the zero padding are skipped, not multiplied by zero (as in
    PyTorch), so a non-finite weight there does not reach the output.
    """
    x, w, b, s, p, d, groups, Ho, Wo = _conv_args(x, w, b, stride, padding, dilation, groups)
    apply, lo, hi = _act_range(act)
    N, KH, KW, Co = x.shape[0], w.shape[0], w.shape[1], w.shape[3]
    if residual is not None:
        residual = like("residual", residual, x, (N, Ho, Wo, Co))
    y = np.empty((N, Ho, Wo, Co), dtype=x.dtype)
    if y.size == 0:
        return y
    Cog = Co // groups
    if _use_thin(x, w, groups, s):
        _thin.conv_fwd(x, _thin.pack_weight(w), np.zeros(Co, np.float32) if b is None else b, y,
                       y if residual is None else residual, residual is not None, KH, KW,
                       s[0], p[0], p[1], p[2], d[0], d[1], apply, np.float32(lo),
                       np.float32(hi), 4 * numba.get_num_threads())
        return y
    if _use_fast(x, Cog):
        H, W = x.shape[1], x.shape[2]
        kernel = _kernel(w, groups, d)
        wp, bp = _t.pack_weight(w, b, groups, _f.WIDE_C if kernel == _f.WIDE else _t.TILE_C)
        img_bytes = (((Ho - 1) * s[0] + (KH - 1) * d[0] + 1) *
                     ((Wo - 1) * s[1] + (KW - 1) * d[1] + 1) * x.shape[3] + Ho * Wo * Co) * 4
        geom = (Ho, Wo, H, W, KH, KW, s[0], s[1], p[0], p[2], d[0], d[1], _t.TILE_P)
        imgs, chunks, table, last = _tiling(N, geom, img_bytes)
        # a residual is read in whole vectors: fused only when no lane runs past a pixel
        fuse = residual is None or Cog % 8 == 0
        has_res = residual is not None and fuse
        _f.conv_fwd(x, wp, bp, y, residual if has_res else y[:0], has_res, s[0], s[1], p[0],
                    p[2], KH, KW, d[0], d[1], groups, *table, *last, imgs, chunks,
                    apply and fuse, np.float32(lo), np.float32(hi), 4 * numba.get_num_threads(),
                    kernel)
        if fuse:
            return y
    else:
        _k.conv_fwd_generic(x, w, np.zeros(Co, x.dtype) if b is None else b, y,
                            s[0], s[1], p[0], p[2], d[0], d[1], groups)
    if residual is not None:
        y += residual
    if apply:
        np.clip(y, x.dtype.type(lo), x.dtype.type(hi), out=y)
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
        gx = _grad_input(gy, x, w, s, p, d, groups)
    if need_w:
        gw = _grad_weight(gy, x, w, s, p, d, groups)
    if need_b:
        gb = colsum(gy.reshape(-1, gy.shape[3])).astype(gy.dtype)
    return gx, gw, gb


def _grad_input(gy, x, w, s, p, d, groups):
    """Transposed convolution. float32, stride 1: the forward kernel on gy with flipped,
    channel-swapped weights; float32, strided: the scatter kernel; else the generic
    gather kernel."""
    N, H, W, Ci = x.shape
    KH, KW, Cig, Co = w.shape
    Cog = Co // groups
    if not _use_fast(x, Cig):
        gx = np.empty_like(x)
        wt = np.ascontiguousarray(w.transpose(0, 1, 3, 2))
        _k.conv_bwd_input(gy, wt, gx, s[0], s[1], p[0], p[2], d[0], d[1], groups)
        return gx
    if s != (1, 1):  # scatter form: no zero-stuffing
        gx = np.empty_like(x)
        _g.conv_bwd_input(gy, _g.pack_transposed(w, groups), gx, s[0], s[1], p[0], p[2],
                          KH, KW, d[0], d[1], groups)
        return gx
    # gx[ih] = sum_k gy[ih - lo + k*d] * w[KH-1-k]: a forward convolution of gy
    up = gy
    pads = []
    for axis, (size, k, dil, lo) in enumerate(((H, KH, d[0], p[0]), (W, KW, d[1], p[2]))):
        lo = dil * (k - 1) - lo
        if lo < 0:  # rows of `up` before -lo never reach gx
            up = up[:, -lo:] if axis == 0 else up[:, :, -lo:]
            lo = 0
        hi = size + dil * (k - 1) - up.shape[1 + axis] - lo
        if hi < 0:  # nor do rows after this
            up = up[:, :hi] if axis == 0 else up[:, :, :hi]
            hi = 0
        pads += [lo, hi]
    wf = w[::-1, ::-1].reshape(KH, KW, Cig, groups, Cog).transpose(0, 1, 4, 3, 2)
    wf = np.ascontiguousarray(wf.reshape(KH, KW, Cog, groups * Cig))
    return conv2d(np.ascontiguousarray(up), wf, None, (1, 1), tuple(pads), d, groups)


def _grad_weight(gy, x, w, s, p, d, groups):
    """Weight gradient, HWIO. float32: register-blocked kernel over fixed batch chunks."""
    N, H, W, Ci = x.shape
    KH, KW, Cig, Co = w.shape
    if x.dtype != np.float32:
        gw = np.empty_like(w)
        _k.conv_bwd_weight(gy, x, gw, s[0], s[1], p[0], p[2], d[0], d[1], groups)
        return gw
    Ho, Wo = gy.shape[1], gy.shape[2]
    Wp = (Wo - 1) * s[1] + (KW - 1) * d[1] + 1
    rows = (Ho - 1) * s[0] + (KH - 1) * d[0] + 1
    # images per pass: their padded input and their gy together stay in L2
    per_img = (rows * Wp * Ci + Ho * Wo * Co) * 4
    imgs = max(1, min(-(-N // _g.CHUNKS), _SCRATCH_BYTES // per_img))
    nchunks = min(_g.CHUNKS, -(-N // imgs))
    nblk = -(-(Co // groups) // _t.TILE_C)
    part = np.empty((nchunks, groups * nblk * KH * KW * Cig * _t.TILE_C), dtype=np.float32)
    _g.conv_bwd_weight(x, gy, _t.tap_table(KH, KW, Cig, d[0], d[1]), part, s[0], s[1],
                       p[0], p[2], KH, KW, d[0], d[1], groups, imgs)
    return _g.unpack_weight_grad(part, KH, KW, Cig, Co, groups)


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
