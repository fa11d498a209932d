"""Pooling forwards against loop twins (PyTorch rules), VJPs against central differences."""

import numpy as np
import pytest

import naive_ops as nv
from numharden import ops
from numharden.errors import ConfigError, DTypeError, ShapeError

# (H, W, kernel, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    (6, 6, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False),
    (7, 7, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False),
    (7, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),
    (5, 7, (2, 3), (2, 2), (0, 0, 1, 1), (1, 1), True),
    (9, 9, (3, 3), (2, 3), (1, 0, 1, 1), (2, 2), False),
    (8, 6, (3, 2), (3, 1), (1, 1, 0, 1), (2, 1), True),
    (6, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), False),
]
AVG_CASES = [c[:5] + (c[6],) for c in MAX_CASES if c[5] == (1, 1)]


def _x(H, W, dtype=np.float64, seed=0, N=2, C=3):
    return np.random.default_rng(seed).standard_normal((N, H, W, C)).astype(dtype)


@pytest.mark.parametrize("case", MAX_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_matches_loops(case, dtype):
    H, W, k, s, p, d, cm = case
    x = _x(H, W, dtype)
    y, arg = ops.maxpool2d(x, k, s, p, d, cm)
    ry, rarg = nv.maxpool2d(x, k, s, p, d, cm)
    assert y.dtype == dtype and arg.dtype == np.int64
    np.testing.assert_array_equal(y, ry.astype(dtype))
    np.testing.assert_array_equal(arg, rarg)


def test_maxpool_ties_go_to_first_and_nan_wins():
    x = np.zeros((1, 4, 4, 2))
    x[0, :, :, 1] = np.arange(16).reshape(4, 4) % 3  # several maxima per window
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = np.nan  # two NaN in the first window: PyTorch keeps the last
    y, arg = ops.maxpool2d(x, 2, 2)
    ry, rarg = nv.maxpool2d(x, (2, 2), (2, 2), (0,) * 4, (1, 1), False)
    np.testing.assert_array_equal(arg, rarg)
    assert arg[0, 0, 0, 0] == 4 and np.isnan(y[0, 0, 0, 0])
    assert arg[0, 0, 1, 0] == 2  # all zeros: first position of the window
    np.testing.assert_array_equal(arg[0, :, :, 1], [[5, 2], [8, 11]])  # 11 ties with 14


@pytest.mark.parametrize("case", MAX_CASES)
def test_maxpool_vjp(case):
    H, W, k, s, p, d, cm = case
    x = _x(H, W, seed=1, N=1)
    y, arg = ops.maxpool2d(x, k, s, p, d, cm)
    u = np.random.default_rng(2).standard_normal(y.shape)
    gx = ops.maxpool2d_vjp(u, arg, x.shape)
    fd = nv.numeric_vjp(lambda t: ops.maxpool2d(t, k, s, p, d, cm)[0], x, u)
    np.testing.assert_allclose(gx, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("case", AVG_CASES)
@pytest.mark.parametrize("include", [True, False])
def test_avgpool_matches_loops_and_vjp(case, include):
    H, W, k, s, p, cm = case
    x = _x(H, W)
    y = ops.avgpool2d(x, k, s, p, cm, include)
    np.testing.assert_allclose(y, nv.avgpool2d(x, k, s, p, cm, include), rtol=1e-12)
    y32 = ops.avgpool2d(x.astype(np.float32), k, s, p, cm, include)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y, rtol=1e-5, atol=1e-6)
    u = np.random.default_rng(3).standard_normal(y.shape)
    gx = ops.avgpool2d_vjp(u, x.shape, k, s, p, cm, include)
    fd = nv.numeric_vjp(lambda t: ops.avgpool2d(t, k, s, p, cm, include), x, u)
    np.testing.assert_allclose(gx, fd, rtol=1e-7, atol=1e-8)


def test_global_avgpool():
    x = _x(3, 5)
    y = ops.global_avgpool(x)
    ref = np.array([[[[sum(x[n, h, w, c] for h in range(3) for w in range(5)) / 15
                       for c in range(3)]]] for n in range(2)])
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    u = np.random.default_rng(4).standard_normal(y.shape)
    np.testing.assert_allclose(ops.global_avgpool_vjp(u, x.shape),
                               nv.numeric_vjp(ops.global_avgpool, x, u), rtol=1e-7)
    with pytest.raises(ShapeError):
        ops.global_avgpool_vjp(u[:, :, :, :2], x.shape)


def test_pool_errors():
    x = _x(6, 6, np.float32)
    with pytest.raises(ConfigError, match="half the kernel"):
        ops.maxpool2d(x, 2, 2, 2)
    with pytest.raises(ConfigError, match="kernel"):
        ops.avgpool2d(x, 0)
    with pytest.raises(ShapeError, match="larger"):
        ops.maxpool2d(x, 7)
    with pytest.raises(DTypeError):
        ops.maxpool2d(x.astype(np.int64), 2)
    y, arg = ops.maxpool2d(x, 2)
    with pytest.raises(DTypeError, match="int64"):
        ops.maxpool2d_vjp(y, arg.astype(np.int32), x.shape)
    with pytest.raises(ShapeError, match="disagree"):
        ops.maxpool2d_vjp(y, arg, (2, 6, 6, 4))
    with pytest.raises(ShapeError, match="outside"):
        ops.maxpool2d_vjp(y, arg + 100, x.shape)
    with pytest.raises(ShapeError, match="forward output"):
        ops.avgpool2d_vjp(y[:, :2], x.shape, 2)


@pytest.mark.parametrize("C", [3, 8, 19])
def test_maxpool_float32_vector_kernel_nan_ties_and_no_argmax(C):
    """float32 runs a kernel with 8-channel vectors and float-coded indices: check
    channel tails (C % 8), ties, NaN, padding, and that with_argmax=False gives the
    same maxima and None."""
    rng = np.random.default_rng(C)
    x = np.round(rng.standard_normal((3, 7, 6, C)), 1).astype(np.float32)  # many ties
    x[0, 2, 3, :2] = np.nan
    x[2, 6, 5, -1] = np.nan  # the very last element: the over-read guard path
    for k, s, p, d, cm in [((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),
                           ((2, 2), (1, 2), (0, 1, 1, 0), (2, 1), False)]:
        y, arg = ops.maxpool2d(x, k, s, p, d, cm)
        ry, rarg = nv.maxpool2d(x, k, s, p, d, cm)
        np.testing.assert_array_equal(y, ry.astype(np.float32))
        np.testing.assert_array_equal(arg, rarg)
        y2, none = ops.maxpool2d(x, k, s, p, d, cm, with_argmax=False)
        assert none is None
        np.testing.assert_array_equal(y2, y)
