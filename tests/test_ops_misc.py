"""Activations, batch norm, losses and shape ops: loop twins, closed forms, differences."""

import numpy as np
import pytest

import naive_ops as nv
from numharden import ops
from numharden.errors import ConfigError, DTypeError, ShapeError


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_activations_closed_form_and_boundaries():
    x = np.array([-2.0, 0.0, 0.5, 6.0, 7.0, np.nan])
    np.testing.assert_array_equal(ops.relu(x), [0, 0, 0.5, 6, 7, np.nan])
    np.testing.assert_array_equal(ops.relu6(x), [0, 0, 0.5, 6, 6, np.nan])
    np.testing.assert_array_equal(ops.hardtanh(x, -1, 1), [-1, 0, 0.5, 1, 1, np.nan])
    g = np.arange(1.0, 7.0)
    np.testing.assert_array_equal(ops.relu_vjp(g, x), [0, 0, 3, 4, 5, 0])
    np.testing.assert_array_equal(ops.relu6_vjp(g, x), [0, 0, 3, 0, 0, 0])
    np.testing.assert_array_equal(ops.hardtanh_vjp(g, x, -2, 6), [0, 2, 3, 0, 0, 0])
    assert ops.relu(x.astype(np.float32)).dtype == np.float32
    with pytest.raises(ConfigError, match="lo < hi"):
        ops.hardtanh(x, 1, 1)
    with pytest.raises(ShapeError, match="forward output"):
        ops.relu_vjp(g[:2], x)


@pytest.mark.parametrize("f,vjp", [(ops.relu, ops.relu_vjp), (ops.relu6, ops.relu6_vjp),
                                   (lambda t: ops.hardtanh(t, -0.5, 0.7),
                                    lambda g, t: ops.hardtanh_vjp(g, t, -0.5, 0.7))])
def test_activation_vjp_differences(f, vjp):
    x = _rng(1).standard_normal((3, 4)) * 4
    u = _rng(2).standard_normal(x.shape)
    np.testing.assert_allclose(vjp(u, x), nv.numeric_vjp(f, x, u), atol=1e-8)


def test_channel_affine():
    x = _rng(3).standard_normal((2, 3, 3, 4)).astype(np.float32)
    a, c = np.arange(4, dtype=np.float32), np.ones(4, np.float32)
    y = ops.channel_affine(x, a, c)
    for ch in range(4):
        np.testing.assert_array_equal(y[..., ch], x[..., ch] * a[ch] + c[ch])
    with pytest.raises(ShapeError, match=r"\(4,\)"):
        ops.channel_affine(x, a[:3], c)
    with pytest.raises(DTypeError):
        ops.channel_affine(x, a.astype(np.float64), c)


@pytest.mark.parametrize("shape", [(3, 2, 3, 4), (5, 3)])
def test_batchnorm_train(shape):
    rng = _rng(4)
    x = rng.standard_normal(shape) * 3 + 1
    gamma, beta = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    y, mean, var, ctx = ops.batchnorm_train(x, gamma, beta, 1e-5)
    ry, rmean, rvar = nv.batchnorm_train(x, gamma, beta, 1e-5)
    np.testing.assert_allclose(y, ry, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mean, rmean, rtol=1e-12)
    np.testing.assert_allclose(var, rvar, rtol=1e-12)
    u = rng.standard_normal(shape)
    gx, gg, gb = ops.batchnorm_train_vjp(u, ctx)
    np.testing.assert_allclose(gx, nv.numeric_vjp(
        lambda t: ops.batchnorm_train(t, gamma, beta, 1e-5)[0], x, u), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gg, nv.numeric_vjp(
        lambda t: ops.batchnorm_train(x, t, beta, 1e-5)[0], gamma, u), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gb, nv.numeric_vjp(
        lambda t: ops.batchnorm_train(x, gamma, t, 1e-5)[0], beta, u), rtol=1e-6, atol=1e-7)


def test_batchnorm_float32_and_errors():
    x = _rng(5).standard_normal((4, 2, 2, 3)).astype(np.float32)
    g, b = np.ones(3, np.float32), np.zeros(3, np.float32)
    y, mean, var, _ = ops.batchnorm_train(x, g, b, 1e-5)
    assert y.dtype == mean.dtype == var.dtype == np.float32
    np.testing.assert_allclose(y, nv.batchnorm_train(x, g, b, 1e-5)[0], atol=1e-5)
    with pytest.raises(ConfigError, match="eps"):
        ops.batchnorm_train(x, g, b, 0.0)
    with pytest.raises(ShapeError):
        ops.batchnorm_train(x, g[:2], b, 1e-5)
    with pytest.raises(ConfigError, match="BatchNormContext"):
        ops.batchnorm_train_vjp(y, None)


def test_log_softmax_and_cross_entropy():
    rng = _rng(6)
    z = rng.standard_normal((5, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2])
    np.testing.assert_allclose(ops.log_softmax(z), nv.log_softmax(z), rtol=1e-12)
    big = np.array([[1000.0, 0.0, -1000.0]])  # stable for huge logits
    np.testing.assert_allclose(ops.log_softmax(big), [[0.0, -1000.0, -2000.0]])
    loss, probs = ops.cross_entropy(z, labels)
    assert loss == pytest.approx(nv.cross_entropy(z, labels), rel=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    u = rng.standard_normal(z.shape)
    y = ops.log_softmax(z)
    np.testing.assert_allclose(ops.log_softmax_vjp(u, y),
                               nv.numeric_vjp(ops.log_softmax, z, u), rtol=1e-6, atol=1e-8)
    g = ops.cross_entropy_vjp(2.0, probs, labels)
    np.testing.assert_allclose(g, nv.numeric_vjp(lambda t: ops.cross_entropy(t, labels)[0],
                                                 z, np.array(2.0)), rtol=1e-6, atol=1e-8)
    l32, _ = ops.cross_entropy(z.astype(np.float32), labels)
    assert l32.dtype == np.float32


def test_cross_entropy_errors():
    z = np.zeros((3, 4))
    with pytest.raises(DTypeError, match="integers"):
        ops.cross_entropy(z, np.zeros(3))
    with pytest.raises(ShapeError, match=r"\(3,\)"):
        ops.cross_entropy(z, np.zeros(2, int))
    with pytest.raises(ShapeError, match=r"\[0, 4\)"):
        ops.cross_entropy(z, np.array([0, 4, 1]))
    with pytest.raises(ShapeError, match="empty"):
        ops.cross_entropy(z[:0], np.zeros(0, int))


def test_flatten_nchw_order_and_adjoint():
    x = _rng(7).standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(ops.flatten(x), nv.flatten(x))
    u = _rng(8).standard_normal((2, 60))
    gx = ops.flatten_vjp(u, x.shape)
    assert gx.shape == x.shape
    assert np.sum(ops.flatten(x) * u) == pytest.approx(np.sum(x * gx), rel=1e-12)
    z = np.ones((2, 6))
    assert ops.flatten(z) is z and ops.flatten_vjp(z, z.shape) is z
    with pytest.raises(ShapeError):
        ops.flatten_vjp(u, (2, 3, 4))
    with pytest.raises(ShapeError):
        ops.flatten(x[0, 0, 0])


@pytest.mark.parametrize("shape,stride,pads", [((2, 8, 8, 3), (2, 2), (2, 3)),
                                               ((1, 7, 5, 4), (2, 3), (0, 4)),
                                               ((2, 3, 3, 2), (1, 1), (1, 0))])
def test_subsample_pad_loop_twin_and_adjoint(shape, stride, pads):
    x = _rng(10).standard_normal(shape)
    y = ops.subsample_pad(x, stride, pads)
    np.testing.assert_array_equal(y, nv.subsample_pad(x, stride, pads))
    assert ops.subsample_pad(x.astype(np.float32), stride, pads).dtype == np.float32
    u = _rng(11).standard_normal(y.shape)
    gx = ops.subsample_pad_vjp(u, x.shape, stride, pads)
    assert np.sum(y * u) == pytest.approx(np.sum(x * gx), rel=1e-12)
    with pytest.raises(ShapeError, match="expected"):
        ops.subsample_pad_vjp(u[..., 1:], x.shape, stride, pads)
    with pytest.raises(ShapeError, match=">= 1"):
        ops.subsample_pad(x, (0, 1), pads)


def test_concat_and_adjoint():
    rng = _rng(9)
    xs = [rng.standard_normal((2, 3, 3, c)) for c in (1, 4, 2)]
    y = ops.concat(xs)
    np.testing.assert_array_equal(y[..., 1:5], xs[1])
    u = rng.standard_normal(y.shape)
    gs = ops.concat_vjp(u, [1, 4, 2])
    assert np.sum(y * u) == pytest.approx(sum(np.sum(a * g) for a, g in zip(xs, gs)))
    with pytest.raises(ShapeError, match="sum to"):
        ops.concat_vjp(u, [1, 4])
    with pytest.raises(ShapeError, match="agree"):
        ops.concat([xs[0], xs[1][:1]])
    with pytest.raises(DTypeError):
        ops.concat([xs[0], xs[1].astype(np.float32)])
    with pytest.raises(ShapeError, match="empty"):
        ops.concat([])


def test_set_threads_respects_config(monkeypatch):
    import numba

    from numharden.kernels import get_threads, set_threads
    before = numba.get_num_threads()
    try:
        assert set_threads(1) == 1 == get_threads()
        assert set_threads(0) == numba.config.NUMBA_NUM_THREADS
        monkeypatch.setenv("NUMHARDEN_THREADS", "1")
        assert set_threads() == 1
        with pytest.raises(ConfigError, match="thread count"):
            set_threads(-1)
        with pytest.raises(ConfigError, match="exceeds"):
            set_threads(numba.config.NUMBA_NUM_THREADS + 1)
        monkeypatch.setenv("NUMHARDEN_THREADS", "two")
        with pytest.raises(ConfigError, match="NUMHARDEN_THREADS"):
            set_threads()
    finally:
        numba.set_num_threads(before)


def test_set_threads_caps_blas(monkeypatch):
    import os

    import numba
    from threadpoolctl import threadpool_info

    from numharden.kernels import get_blas_threads, set_threads
    if not any(i.get("user_api") == "blas" for i in threadpool_info()) or os.cpu_count() < 2:
        pytest.skip("numpy's BLAS is not visible to threadpoolctl, or one core only")
    numba_threads, before = numba.get_num_threads(), get_blas_threads()
    assert before == 1  # importing numharden applied the default cap
    try:
        set_threads(0, blas=2)
        assert get_blas_threads() == 2
        set_threads(0, blas=0)  # leaves BLAS as it is
        assert get_blas_threads() == 2
        monkeypatch.setenv("NUMHARDEN_BLAS_THREADS", "1")
        set_threads(0)
        assert get_blas_threads() == 1
        with pytest.raises(ConfigError, match="BLAS thread count"):
            set_threads(0, blas=-1)
    finally:
        set_threads(numba_threads, blas=before)


_MMAP_PROBE = """
import ctypes, numpy as np, numharden.kernels
class MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
f = ctypes.CDLL(None).mallinfo2
f.restype = MallInfo2
before = f().hblkhd
a = np.ones(48 << 20, np.uint8)
print(f().hblkhd - before)
"""


@pytest.mark.parametrize("keep_mb, mmapped", [("0", True), ("16", True), ("64", False)])
def test_keep_freed_memory_moves_large_buffers_into_the_heap(keep_mb, mmapped):
    """In a fresh process, importing numharden's kernels raises glibc's mmap threshold to
    malloc_keep_mb: a 48 MiB array then comes from the heap (kept for reuse when freed)
    instead of its own mmap (unmapped when freed, page-faulted again next time)."""
    import os
    import platform
    import subprocess
    import sys
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc policy applies to glibc only")
    env = {**os.environ, "NUMHARDEN_MALLOC_KEEP_MB": keep_mb}
    out = subprocess.run([sys.executable, "-c", _MMAP_PROBE], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert (int(out) >= 48 << 20) == mmapped


def test_keep_freed_memory_validates_its_setting(monkeypatch):
    from numharden import kernels
    assert kernels.keep_freed_memory(0) is False
    with pytest.raises(ConfigError, match="malloc_keep_mb"):
        kernels.keep_freed_memory(-1)
    monkeypatch.setenv("NUMHARDEN_MALLOC_KEEP_MB", "lots")
    with pytest.raises(ConfigError, match="NUMHARDEN_MALLOC_KEEP_MB"):
        kernels.keep_freed_memory()


def test_wide_kernels_follow_numbas_target_cpu(monkeypatch):
    """With NUMBA_CPU_NAME set (portable caches), AVX-512 kernels are used only if
    NUMBA_CPU_FEATURES grants AVX-512F, whatever the host has."""
    import numba

    from numharden.kernels import simd16
    monkeypatch.setattr(numba.config, "CPU_NAME", "generic")
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "")
    assert simd16._host_has_avx512() is False
    monkeypatch.setattr(numba.config, "CPU_NAME", "skylake-avx512")
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx2,+fma,+avx512f")
    assert simd16._host_has_avx512() is True
