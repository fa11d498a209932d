"""Activation quantisation against an element-at-a-time twin and closed-form edge cases."""

import numpy as np
import pytest

import naive_ops as nv
from numharden import ops
from numharden.errors import ConfigError, DTypeError


@pytest.mark.parametrize("bits,clip", [(1, 1.0), (4, 2.5), (8, 6.0), (12, 3.7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_act_quant_matches_twin(bits, clip, dtype):
    x = (np.random.default_rng(bits).standard_normal((3, 5, 4, 7)) * clip).astype(dtype)
    x.flat[:4] = [np.nan, np.inf, -np.inf, -0.0]
    y, codes = ops.act_quant(x, bits, clip)
    ry, rcodes = nv.act_quant(x, bits, clip)
    assert codes.dtype == (np.uint8 if bits <= 8 else np.uint16) and y.dtype == dtype
    np.testing.assert_array_equal(codes, rcodes)
    np.testing.assert_array_equal(y, ry)  # bit-exact, same arithmetic in x's dtype
    assert codes.flat[0] == 0 and codes.flat[1] == 2 ** bits - 1 and codes.flat[2] == 0
    np.testing.assert_array_equal(ops.act_quant_from_codes(codes, bits, clip, dtype), y)


def test_act_quant_rounds_half_to_even():
    x = np.array([0.5, 1.5, 2.5, 3.5, 14.5, 20.0], np.float32)
    y, codes = ops.act_quant(x, 4, 15.0)  # step exactly 1
    np.testing.assert_array_equal(codes, [0, 2, 2, 4, 14, 15])
    np.testing.assert_array_equal(y, [0, 2, 2, 4, 14, 15])


def test_act_quant_vjp_pact_convention():
    x = np.array([-1.0, 0.0, 0.3, 2.0, 2.0001, 5.0, np.nan])
    gy = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    gx, gclip = ops.act_quant_vjp(gy, x, 2.0)
    np.testing.assert_array_equal(gx, [0, 2, 3, 4, 0, 0, 0])
    assert gclip == 11.0 and gclip.dtype == np.float64
    gx32, gclip32 = ops.act_quant_vjp(gy.astype(np.float32), x.astype(np.float32), 2.0)
    assert gx32.dtype == np.float32 and gclip32.dtype == np.float32


def test_act_quant_vjp_gclip_matches_differences_of_the_clipped_ramp():
    """Away from the rounding, d/dclip of clip(x, 0, clip) summed with gy is sum(gy[x>clip])."""
    rng = np.random.default_rng(1)
    x, gy = rng.standard_normal(50) * 3, rng.standard_normal(50)
    _, gclip = ops.act_quant_vjp(gy, x, 1.3)
    fd = nv.numeric_vjp(lambda c: np.clip(x, 0, c[0]), np.array([1.3]), gy)[0]
    assert gclip == pytest.approx(fd, rel=1e-8)


def test_act_quant_errors():
    x = np.ones(4, np.float32)
    with pytest.raises(ConfigError, match="bits"):
        ops.act_quant(x, 0, 1.0)
    with pytest.raises(ConfigError, match="bits"):
        ops.act_quant(x, 17, 1.0)
    with pytest.raises(ConfigError, match="clip"):
        ops.act_quant(x, 4, [1.0, 2.0])
    with pytest.raises(ConfigError, match="clip"):   # training needs a valid clip
        ops.act_quant_vjp(x, x, 0.0)
    with pytest.raises(DTypeError):
        ops.act_quant(x.astype(np.int16), 4, 1.0)
    _, codes = ops.act_quant(x, 4, 1.0)
    with pytest.raises(DTypeError, match="uint16"):
        ops.act_quant_from_codes(codes, 12, 1.0)
    with pytest.raises(DTypeError, match="float32 or float64"):
        ops.act_quant_from_codes(codes, 4, 1.0, np.float16)
    with pytest.raises(DTypeError):
        ops.act_quant_from_codes(codes.astype(np.int8), 4, 1.0)


@pytest.mark.parametrize("clip,expect", [(0.0, 0.0), (-0.0, 0.0), (-2.5, 0.0), (-np.inf, 0.0),
                                         (np.nan, np.nan), (np.inf, np.nan)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_faulted_clip_is_computed_as_documented(clip, expect, dtype):
    """docs/FAULTS.md: a clip <= 0 clamps every activation to 0, a NaN/+inf clip makes
    every output NaN; all codes are 0; the hook path (codes, then dequantise) agrees."""
    x = np.array([-1.0, 0.0, 0.3, 2.0, np.inf, np.nan], dtype)
    y, codes = ops.act_quant(x, 4, clip)
    assert y.dtype == dtype and codes.dtype == np.uint8 and not codes.any()
    np.testing.assert_array_equal(y, np.full(x.shape, expect, dtype))
    assert not np.signbit(np.nan_to_num(y)).any()
    np.testing.assert_array_equal(ops.act_quant_from_codes(codes, 4, clip, dtype), y)
    y2, none = ops.act_quant(x, 4, clip, codes=False)
    assert none is None
    np.testing.assert_array_equal(y2, y)


def test_act_quant_accepts_size1_clip_array():
    x = np.linspace(-1, 3, 11).astype(np.float32)
    y1, c1 = ops.act_quant(x, 3, np.array([2.0], np.float32))
    y2, c2 = ops.act_quant(x, 3, 2.0)
    np.testing.assert_array_equal(c1, c2)
    with pytest.raises(ConfigError, match="one real number"):
        ops.act_quant(x, 3, np.array([1.0, 2.0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fake_quant_weight_int_closed_form(dtype):
    from numharden.formats import parse_format
    w = np.random.default_rng(3).standard_normal((6, 5, 3, 3)).astype(dtype)
    wq = ops.fake_quant_weight(w, "int4")
    assert wq.dtype == dtype and wq.shape == w.shape
    scale = np.abs(w).max() / 7
    ref = np.clip(np.rint(w / scale), -7, 7) * scale
    np.testing.assert_allclose(wq, ref, rtol=1e-6, atol=1e-6 * scale)
    assert len(np.unique(wq)) <= 15
    fmt = parse_format("int4/ch")
    wq_ch = ops.fake_quant_weight(w, fmt, axis=0)
    np.testing.assert_array_equal(wq_ch, fmt.encode(w, 0).decode().astype(dtype))
    for o in range(6):  # every output channel reaches its own extreme code
        s = np.abs(w[o]).max() / 7
        np.testing.assert_allclose(np.abs(wq_ch[o]).max(), 7 * s, rtol=1e-6)


def test_fake_quant_weight_errors():
    from numharden.errors import ConfigError as CE
    with pytest.raises(CE):
        ops.fake_quant_weight(np.ones(3, np.float32), "int99")
    with pytest.raises(DTypeError):
        ops.fake_quant_weight(np.ones(3, np.int8), "int4")


def test_act_quant_and_relu_parallel_kernels_equal_serial_ones():
    """Arrays above SERIAL_BELOW take the parallel kernels; same values as the serial
    ones (NaN, Inf, negatives and ties included)."""
    from numharden.kernels import elementwise as ke, quant as kq
    rng = np.random.default_rng(8)
    x = (rng.standard_normal(ke.SERIAL_BELOW + 1000) * 2).astype(np.float32)
    x[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.5 * 3 / 15, 3.0]
    y, codes = ops.act_quant(x, 4, 3.0)
    y1, c1 = np.empty_like(x), np.empty(x.size, np.uint8)
    clip = np.float32(3.0)
    kq.act_quant_fwd_serial(x, clip, clip / np.float32(15), y1, c1)
    np.testing.assert_array_equal(y, y1)
    np.testing.assert_array_equal(codes, c1)
    r, r1 = ops.relu(x), np.empty_like(x)
    ke.clamp_serial(x, np.float32(0), np.float32(np.inf), r1)
    np.testing.assert_array_equal(r, r1)
    np.testing.assert_array_equal(r, np.maximum(x, 0))  # np.maximum keeps NaN as well


@pytest.mark.parametrize("n", [1000, 300_001])   # serial and parallel kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_act_quant_without_codes_gives_the_same_bits(n, dtype):
    rng = np.random.default_rng(31)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    x[:4] = [np.nan, np.inf, -np.inf, -0.0]
    y, codes = ops.act_quant(x, 4, 2.5)
    y2, none = ops.act_quant(x, 4, 2.5, codes=False)
    assert none is None and codes.shape == x.shape
    np.testing.assert_array_equal(y2.view(np.uint8), y.view(np.uint8))  # bits, incl. -0.0
    s = dtype(2.5) / dtype(15)
    np.testing.assert_array_equal(y, codes.astype(dtype) * s)
