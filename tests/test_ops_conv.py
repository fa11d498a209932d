"""conv2d / linear forwards against loop twins, VJPs against central differences."""

import numpy as np
import pytest

import naive_ops as nv
from numharden import ops
from numharden.errors import ConfigError, DTypeError, ShapeError

# (N, H, W, Ci, Co, KH, KW, stride, padding, dilation, groups)
CASES = [
    (2, 7, 9, 3, 5, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 8, 8, 4, 6, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),
    (2, 9, 7, 4, 4, 3, 3, (2, 1), (2, 0, 1, 2), (2, 2), 1),
    (2, 6, 6, 6, 6, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 6),
    (1, 6, 7, 4, 8, 3, 2, (1, 2), (0, 1, 1, 0), (1, 1), 2),
    (3, 5, 5, 5, 7, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (2, 10, 10, 1, 6, 5, 5, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (1, 5, 5, 3, 4, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1), 1),
    (2, 7, 7, 4, 8, 3, 3, (3, 3), (1, 1, 1, 1), (1, 1), 4),
    (1, 9, 9, 16, 32, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),
    (2, 6, 5, 8, 24, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 4, 4, 24, 40, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),
    (2, 5, 6, 4, 16, 3, 3, (1, 2), (0, 3, 2, 0), (1, 1), 1),   # bottom padding > kernel
    (2, 4, 4, 8, 16, 1, 1, (1, 1), (1, 1, 1, 1), (1, 1), 1),   # padded 1x1
    (2, 10, 9, 6, 16, 5, 5, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # LeNet conv2
    (2, 10, 10, 16, 32, 3, 3, (2, 2), (0, 0, 0, 0), (1, 1), 1),  # last input row unused
]


def _data(case, dtype, seed=0):
    N, H, W, Ci, Co, KH, KW, s, p, d, g = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H, W, Ci)).astype(dtype)
    w = rng.standard_normal((KH, KW, Ci // g, Co)).astype(dtype)
    b = rng.standard_normal(Co).astype(dtype)
    return x, w, b, dict(stride=s, padding=p, dilation=d, groups=g)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_matches_loops(case, dtype):
    x, w, b, kw = _data(case, dtype)
    y = ops.conv2d(x, w, b, **kw)
    ref = nv.conv2d(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    assert y.dtype == dtype and y.shape == ref.shape
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
    y0 = ops.conv2d(x, w, None, **kw)
    np.testing.assert_allclose(y0 + b, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES)
def test_conv2d_vjp_directional(case):
    x, w, b, kw = _data(case, np.float64, seed=1)
    rng = np.random.default_rng(2)
    y = ops.conv2d(x, w, b, **kw)
    u = rng.standard_normal(y.shape)
    gx, gw, gb = ops.conv2d_vjp(u, x, w, **kw)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    vx, vw, vb = (rng.standard_normal(a.shape) for a in (x, w, b))
    fd_x = nv.directional(lambda t: ops.conv2d(t, w, b, **kw), x, u, vx)
    fd_w = nv.directional(lambda t: ops.conv2d(x, t, b, **kw), w, u, vw)
    fd_b = nv.directional(lambda t: ops.conv2d(x, w, t, **kw), b, u, vb)
    for fd, g, v in ((fd_x, gx, vx), (fd_w, gw, vw), (fd_b, gb, vb)):
        assert np.sum(g * v) == pytest.approx(fd, rel=1e-7, abs=1e-7)


@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[8]])
def test_conv2d_vjp_elementwise(case):
    x, w, b, kw = _data(case, np.float64, seed=3)
    x, w = x[:1], w
    u = np.random.default_rng(4).standard_normal(ops.conv2d(x, w, b, **kw).shape)
    gx, gw, _ = ops.conv2d_vjp(u, x, w, **kw)
    np.testing.assert_allclose(gx, nv.numeric_vjp(lambda t: ops.conv2d(t, w, b, **kw), x, u),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, nv.numeric_vjp(lambda t: ops.conv2d(x, t, b, **kw), w, u),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", CASES)
def test_conv2d_vjp_float32_matches_float64(case):
    """float32 VJPs (register-blocked kernels) against the float64 ones checked above."""
    x, w, b, kw = _data(case, np.float64, seed=9)
    u = np.random.default_rng(10).standard_normal(ops.conv2d(x, w, b, **kw).shape)
    gx, gw, gb = ops.conv2d_vjp(u, x, w, **kw)
    f32 = [a.astype(np.float32) for a in (u, x, w)]
    gx32, gw32, gb32 = ops.conv2d_vjp(f32[0], f32[1], f32[2], **kw)
    assert gx32.dtype == gw32.dtype == gb32.dtype == np.float32
    for g32, g64 in ((gx32, gx), (gw32, gw), (gb32, gb)):
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4 * np.abs(g64).max())


def test_conv2d_vjp_need_flags_and_float32():
    x, w, b, kw = _data(CASES[0], np.float32)
    u = np.ones(ops.conv2d(x, w, b, **kw).shape, np.float32)
    gx, gw, gb = ops.conv2d_vjp(u, x, w, **kw, need_x=False, need_w=True, need_b=False)
    assert gx is None and gb is None and gw.dtype == np.float32
    _, gw64, _ = ops.conv2d_vjp(u.astype(np.float64), x.astype(np.float64),
                                w.astype(np.float64), **kw)
    np.testing.assert_allclose(gw, gw64, rtol=1e-4, atol=1e-3)


def test_conv2d_scalar_hyperparameters_and_noncontiguous():
    x, w, b, _ = _data(CASES[0], np.float64)
    xt = np.asfortranarray(x)
    y = ops.conv2d(xt, w, b, stride=1, padding=1, dilation=1)
    np.testing.assert_allclose(y, nv.conv2d(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1), rtol=1e-11)


def test_conv2d_errors():
    x, w, b, kw = _data(CASES[0], np.float32)
    with pytest.raises(DTypeError, match="float32 or float64"):
        ops.conv2d(x.astype(np.int32), w)
    with pytest.raises(DTypeError, match="astype"):
        ops.conv2d(x, w.astype(np.float64))
    with pytest.raises(ShapeError, match="HWIO"):
        ops.conv2d(x, w[0])
    with pytest.raises(ShapeError, match="groups"):
        ops.conv2d(x, w, groups=2)
    with pytest.raises(ShapeError, match="shape"):
        ops.conv2d(x, w, b[:2])
    with pytest.raises(ConfigError, match="stride"):
        ops.conv2d(x, w, stride=(0, 1))
    with pytest.raises(ConfigError, match="padding"):
        ops.conv2d(x, w, padding=(1, 1))
    with pytest.raises(ShapeError, match="larger"):
        ops.conv2d(x, np.zeros((9, 9, 3, 2), np.float32))
    with pytest.raises(ShapeError, match="dimensions"):
        ops.conv2d(x[0], w)
    with pytest.raises(ShapeError, match="forward output"):
        ops.conv2d_vjp(np.zeros((1, 1, 1, 5), np.float32), x, w, **kw)


def test_linear_and_vjp():
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((4, 7)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    ref = np.array([[sum(x[n, f] * w[o, f] for f in range(7)) + b[o] for o in range(3)]
                    for n in range(4)])
    np.testing.assert_allclose(ops.linear(x, w, b), ref, rtol=1e-12)
    u = rng.standard_normal((4, 3))
    gx, gw, gb = ops.linear_vjp(u, x, w)
    np.testing.assert_allclose(gx, nv.numeric_vjp(lambda t: ops.linear(t, w, b), x, u), rtol=1e-7)
    np.testing.assert_allclose(gw, nv.numeric_vjp(lambda t: ops.linear(x, t, b), w, u), rtol=1e-7)
    np.testing.assert_allclose(gb, nv.numeric_vjp(lambda t: ops.linear(x, w, t), b, u), rtol=1e-7)
    assert ops.linear_vjp(u, x, w, need_x=False, need_b=False)[::2] == (None, None)
    with pytest.raises(ShapeError, match="in_features"):
        ops.linear(x, w.T)
    with pytest.raises(DTypeError):
        ops.linear(x.astype(np.float32), w)


# Task plans of the register-blocked float32 kernel: (images per task, tile chunks per
# image); chunks are only planned with one image per task.
PLANS = [(2, 1), (1, 3), (1, 1), (3, 1), (1, 1000)]
FAST_CASES = [
    (5, 7, 9, 3, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (5, 9, 7, 4, 20, 3, 3, (2, 1), (2, 0, 1, 2), (2, 2), 1),
    (5, 6, 7, 8, 64, 3, 2, (1, 2), (0, 1, 1, 0), (1, 1), 2),
    (5, 6, 6, 24, 48, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),
    (5, 8, 7, 1, 6, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1), 1),    # 12x8 tiles, compact stores
    (5, 6, 6, 4, 12, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 2),   # 12x8 tiles, 6 of 12 channels
    (5, 6, 5, 3, 10, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),   # 6x16 tiles, compact stores
    (7, 5, 6, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),  # dense kernel, short tiles
    (5, 9, 7, 32, 16, 3, 3, (2, 1), (2, 0, 1, 2), (1, 1), 1),  # dense, uneven padding
    (5, 6, 6, 32, 48, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),  # dense 1x1, unpadded
]


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("case", FAST_CASES)
def test_conv2d_fast_kernel_task_plans(monkeypatch, case, plan):
    import numharden.ops.conv as oc
    x, w, b, kw = _data(case, np.float32, seed=7)
    ref = nv.conv2d(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    imgs, chunks = plan
    monkeypatch.setattr(oc, "_TILINGS", {})
    monkeypatch.setattr(oc, "_fast_plan", lambda N, one, img_bytes: (
        imgs, min(chunks, one[0].shape[0])))
    y = ops.conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ops.conv2d(x, w, b, **kw, act="relu"), ops.relu(y))


@pytest.mark.parametrize("case", [FAST_CASES[7], FAST_CASES[8], FAST_CASES[9], CASES[9]])
def test_conv2d_dense_kernel_bit_identical_to_general(case):
    """Layers with whole 16-channel blocks run a stripped twin of the tile loop; it must
    give the very bits of the general loop, which the same layer takes when 8 more output
    channels break the 16-channel blocks."""
    x, w, b, kw = _data(case, np.float32, seed=9)
    rng = np.random.default_rng(10)
    Co = w.shape[3]
    assert Co % 16 == 0 and w.shape[1] * w.shape[2] >= 32  # the dense kernel's case
    w8 = np.concatenate([w, rng.standard_normal(w.shape[:3] + (8,)).astype(np.float32)], 3)
    b8 = np.concatenate([b, np.zeros(8, np.float32)])
    res = rng.standard_normal((x.shape[0],) + ops.conv2d(x, w, b, **kw).shape[1:3] + (Co + 8,))
    res = res.astype(np.float32)
    for extra in ({}, {"act": "relu6"}, {"act": (-0.5, 0.25), "residual": res}):
        r = extra.get("residual")
        dense = ops.conv2d(x, w, b, **kw, act=extra.get("act"),
                           residual=None if r is None else np.ascontiguousarray(r[..., :Co]))
        general = ops.conv2d(x, w8, b8, **kw, **extra)[..., :Co]
        np.testing.assert_array_equal(dense, general)


@pytest.mark.parametrize("case", [FAST_CASES[7], CASES[9],
                                  (3, 5, 4, 64, 64, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1)])
def test_conv2d_avx512_kernel_bit_identical_to_8_lanes(monkeypatch, case):
    """Where the CPU has AVX-512F, layers with whole 32-channel blocks take 6x32 tiles
    of 16-lane vectors; NUMHARDEN_WIDE_KERNELS=0 sends them to the 8-lane kernel,
    which must give the same bits (epilogue included)."""
    from numharden.kernels import simd16
    from numharden.ops import conv as oc
    if not simd16.AVAILABLE:
        pytest.skip("no AVX-512F on this CPU")
    monkeypatch.setenv("NUMHARDEN_WIDE_KERNELS", "1")
    x, w, b, kw = _data(case, np.float32, seed=11)
    assert oc._wide(w, kw["groups"], kw["dilation"])
    r = np.random.default_rng(12).standard_normal(ops.conv2d(x, w, b, **kw).shape)
    r = r.astype(np.float32)
    wide = [ops.conv2d(x, w, b, **kw), ops.conv2d(x, w, b, **kw, act="relu", residual=r)]
    monkeypatch.setenv("NUMHARDEN_WIDE_KERNELS", "0")
    assert not oc._wide(w, kw["groups"], kw["dilation"])
    narrow = [ops.conv2d(x, w, b, **kw), ops.conv2d(x, w, b, **kw, act="relu", residual=r)]
    for a, c in zip(wide, narrow):
        np.testing.assert_array_equal(a, c)
    ref = nv.conv2d(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    np.testing.assert_allclose(wide[0], ref, rtol=1e-4, atol=1e-4)


def test_conv2d_task_plan_fills_corner_tiles(monkeypatch):
    """With 8x8 outputs each corner of an image is a tap class of one pixel: a task of
    six images fills its 6-pixel tile, one image leaves it 5/6 empty."""
    import numharden.ops.conv as oc
    from numharden.kernels import conv_tiles as t
    one = t.tile_table(1, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, t.TILE_P)
    monkeypatch.setattr(oc.numba, "get_num_threads", lambda: 1)
    imgs, chunks = oc._fast_plan(256, one, 1000)       # cap 64: a multiple of 6 wins
    assert imgs % 6 == 0 and chunks == 1
    assert oc._fast_plan(256, one, oc._TASK_BYTES // 4)[0] == 4  # cap 4: no multiple of 6
    assert oc._fast_plan(2, one, 1000) == (1, 2)       # few images: chunks of tiles
    monkeypatch.setattr(oc.numba, "get_num_threads", lambda: 2)
    imgs, _ = oc._fast_plan(100, one, 1000)             # cap 12: 6 images leave 17 tasks,
    assert imgs == 10                                   # 10 images 10 tasks: even loads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[10]])
def test_conv2d_fused_activation_equals_separate(case, dtype):
    x, w, b, kw = _data(case, dtype, seed=8)
    x[0, 1, 1, 0] = np.nan  # NaN must propagate through the fused clamp as through relu
    y = ops.conv2d(x, w, b, **kw)
    assert np.isnan(y).any()
    np.testing.assert_array_equal(ops.conv2d(x, w, b, **kw, act="relu"), ops.relu(y))
    np.testing.assert_array_equal(ops.conv2d(x, w, b, **kw, act="relu6"), ops.relu6(y))
    np.testing.assert_array_equal(ops.conv2d(x, w, b, **kw, act=(-0.5, 0.25)),
                                  ops.hardtanh(y, -0.5, 0.25))
    with pytest.raises(ConfigError, match="act"):
        ops.conv2d(x, w, b, **kw, act="gelu")
    with pytest.raises(ConfigError, match="act"):
        ops.conv2d(x, w, b, **kw, act=(1.0, 0.0))


def test_conv2d_weight_grad_several_images_per_chunk():
    """A batch larger than the chunk count: chunks hold several images (incl. a short
    last group); float32 against float64, and the bits do not depend on the thread count."""
    import numba
    case = (19, 6, 5, 5, 20, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    x, w, b, kw = _data(case, np.float64, seed=11)
    u = np.random.default_rng(12).standard_normal(ops.conv2d(x, w, b, **kw).shape)
    _, gw, _ = ops.conv2d_vjp(u, x, w, **kw)
    args = [a.astype(np.float32) for a in (u, x, w)]
    _, gw32, _ = ops.conv2d_vjp(*args, **kw)
    np.testing.assert_allclose(gw32, gw, rtol=1e-4, atol=1e-4 * np.abs(gw).max())
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        _, gw32_1, _ = ops.conv2d_vjp(*args, **kw)
        y1 = ops.conv2d(args[1], args[2], None, **kw)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(gw32_1, gw32)
    np.testing.assert_array_equal(y1, ops.conv2d(args[1], args[2], None, **kw))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [CASES[9], CASES[10], CASES[0], FAST_CASES[4]])
def test_conv2d_fused_residual_equals_separate_add(case, dtype):
    """Fused (Co % 16 == 0, float32) and unfused fallbacks give act(conv + b + r) exactly."""
    x, w, b, kw = _data(case, dtype, seed=13)
    y = ops.conv2d(x, w, b, **kw)
    r = np.random.default_rng(14).standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(ops.conv2d(x, w, b, **kw, residual=r), y + r)
    np.testing.assert_array_equal(ops.conv2d(x, w, b, **kw, residual=r, act="relu"),
                                  ops.relu(y + r))
    with pytest.raises(ShapeError, match="residual"):
        ops.conv2d(x, w, b, **kw, residual=r[:, :1])
    with pytest.raises(DTypeError, match="residual"):
        ops.conv2d(x, w, b, **kw, residual=r.astype(np.float16))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_skips_padded_taps(dtype):
    """A non-finite weight at a tap that only meets zero padding for the border rows
    and columns leaves those outputs finite (PyTorch computes only valid taps)."""
    x, w, b, kw = _data((2, 6, 7, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1), dtype, seed=15)
    w[0, 0] = np.inf  # top-left tap: padding for output row 0 and column 0
    y = ops.conv2d(x, w, b, **kw)
    assert np.isfinite(y[:, 0]).all() and np.isfinite(y[:, :, 0]).all()
    assert not np.isfinite(y[:, 1:, 1:]).any()
    ref = nv.conv2d(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    np.testing.assert_allclose(y[:, 0], ref[:, 0], rtol=1e-4, atol=1e-4)


THIN_CASES = [CASES[0], CASES[2], CASES[6], CASES[7],
              (3, 28, 28, 1, 6, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1), 1),   # LeNet conv1
              (1, 5, 37, 2, 13, 3, 3, (2, 1), (1, 0, 0, 2), (1, 3), 1)]   # >2 column tiles


@pytest.mark.parametrize("case", THIN_CASES)
def test_thin_input_kernel_matches_loops_and_fused_epilogue(case):
    """First-layer shapes take the row-vectorised kernel; values match the loop twin,
    and act / residual fused in its epilogue equal applying them afterwards."""
    from numharden.ops import conv as oc
    x, w, b, kw = _data(case, np.float32, seed=21)
    assert oc._use_thin(x, w, kw["groups"], kw["stride"])
    ref = nv.conv2d(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    y = ops.conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    res = np.random.default_rng(22).standard_normal(y.shape).astype(np.float32)
    res.flat[::7] = np.nan
    fused = ops.conv2d(x, w, b, **kw, act=(-0.5, 0.75), residual=res)
    np.testing.assert_array_equal(fused, np.clip(y + res, np.float32(-0.5), np.float32(0.75)))


def test_thin_input_shapes_with_nonfinite_weights_skip_padded_taps():
    from numharden.ops import conv as oc
    x, w, b, kw = _data(THIN_CASES[4], np.float32, seed=23)
    w[0, 0, 0, 2] = np.inf  # tap (0, 0) meets padding in output rows/cols 0 and 1
    assert not oc._use_thin(x, w, 1, kw["stride"])  # falls back to the tap-skipping kernel
    y = ops.conv2d(x, w, b, **kw)
    assert np.isfinite(y[:, :2, :, 2]).all() and np.isfinite(y[:, :, :2, 2]).all()
    assert not np.isfinite(y[:, 2:, 2:, 2]).any()
