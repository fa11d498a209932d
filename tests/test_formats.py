"""Tests of numharden.formats against independent references.

References: ``struct`` for IEEE half/single rounding, hand bit manipulation in plain Python
ints for bfloat16, closed forms for integer and fixed-point codes.
"""

import math
import struct

import numpy as np
import pytest

from numharden.errors import ConfigError, DTypeError, FormatError, ShapeError
from numharden.formats import StoredTensor, parse_format

ALL_SPECS = (
    ["fp32", "fp16", "bf16"]
    + [f"int{n}" for n in range(2, 9)]
    + [f"int{n}/ch" for n in range(2, 9)]
    + [f"uint{n}" for n in range(2, 9)]
    + [f"uint{n}/ch" for n in range(2, 9)]
    + ["q1.1", "q2.0", "q4.4", "q1.7", "q4.12", "q8.8", "q9.0", "q16.16", "q1.31", "q32.0"]
)


# --------------------------------------------------------------------------- references
def ref_bf16(v: float) -> int:
    """bfloat16 bits of float32 value ``v`` by comparison-based RNE on Python ints."""
    b = struct.unpack("<I", struct.pack("<f", v))[0]
    if (b & 0x7FFFFFFF) > 0x7F800000:
        return (b >> 16) | 0x40
    upper, lower = b >> 16, b & 0xFFFF
    if lower > 0x8000 or (lower == 0x8000 and upper & 1):
        upper += 1
    return upper


def ref_pack(v: float, code: str) -> float:
    """IEEE rounding of a Python float via struct ('e' half, 'f' single); Inf on overflow."""
    try:
        return struct.unpack("<" + code, struct.pack("<" + code, v))[0]
    except OverflowError:
        return math.copysign(math.inf, v)


def bits_of(x: np.ndarray) -> np.ndarray:
    return x.view({2: np.uint16, 4: np.uint32}[x.itemsize])


# --------------------------------------------------------------------------- parse
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_spec_round_trips(spec):
    f = parse_format(spec)
    assert f.spec == spec
    assert parse_format(f.spec) == f
    assert parse_format(f) is f
    assert parse_format("  " + spec.upper() + " ") == f


@pytest.mark.parametrize(
    "bad", ["fp8", "int1", "int9", "uint9", "int4/c", "q0.4", "q20.13", "q1.0", "", "int"]
)
def test_parse_rejects_bad_specs_listing_valid_ones(bad):
    with pytest.raises(ConfigError, match="valid specs: fp32, fp16, bf16"):
        parse_format(bad)


def test_parse_rejects_non_string():
    with pytest.raises(ConfigError, match="expected a spec string"):
        parse_format(8)


def test_format_attributes():
    f = parse_format("int4/ch")
    assert (f.kind, f.bits, f.signed, f.storage_dtype, f.per_channel) == (
        "int", 4, True, np.int8, True)
    f = parse_format("uint3")
    assert (f.kind, f.bits, f.signed, f.storage_dtype, f.raw_mask) == (
        "affine", 3, False, np.uint8, 7)
    f = parse_format("q9.3")
    assert (f.kind, f.bits, f.storage_dtype, f.raw_dtype) == ("fixed", 12, np.int16, np.uint16)
    assert parse_format("q16.16").storage_dtype == np.int32
    f = parse_format("bf16")
    assert (f.kind, f.bits, f.storage_dtype) == ("float", 16, np.uint16)
    assert f.bit_fields["exponent"] == tuple(range(7, 15))
    assert parse_format("fp16").bit_fields["mantissa"] == tuple(range(10))
    assert parse_format("fp32").bit_fields["sign"] == (31,)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_decode_encode_round_trip_is_exact(spec):
    """Decoded values re-encode to the same codes with the same scale (idempotence)."""
    f = parse_format(spec)
    rng = np.random.default_rng(ALL_SPECS.index(spec))
    x = (rng.standard_normal((3, 4, 5)) * 10.0 ** rng.integers(-3, 3, (3, 1, 1))).astype(np.float32)
    t = f.encode(x)
    assert t.codes.dtype == f.storage_dtype and t.codes.shape == x.shape
    y = t.decode()
    assert y.dtype == np.float32 and y.shape == x.shape
    t2 = f.encode_with(y, t.scale, t.zero_point, t.axis)
    np.testing.assert_array_equal(t2.raw(), t.raw())
    np.testing.assert_array_equal(t2.decode(), y)
    if t.scale is not None:  # saturation far outside the range
        big = f.encode_with(np.full_like(x, 3e38), t.scale, t.zero_point, t.axis)
        assert np.all(big.codes == f.qmax)
        assert np.all(f.encode_with(-np.full_like(x, 3e38), t.scale, t.zero_point,
                                    t.axis).codes == f.qmin)


# --------------------------------------------------------------------------- floats
def _special_f32(rng):
    specials = np.array(
        [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 65504.0, 65519.99, 65520.0, 1e-8,
         6e-8, 3e-8, 2.9802322e-08, 3.4028235e38, 1e-45, -1e-45, 1.0009765625, 1.00048828125,
         1.00146484375],
        dtype=np.float32,
    )
    pats = rng.integers(0, 2**32, size=4000, dtype=np.uint64).astype(np.uint32)
    # ties and near-ties of the bf16 rounding point, all exponent ranges
    ties = (pats & np.uint32(0xFFFF0000)) | np.uint32(0x8000)
    nans = np.array([0x7F800001, 0xFF800001, 0x7FC00000, 0x7F80FFFF, 0xFFFFFFFF], np.uint32)
    return np.concatenate([specials, pats.view(np.float32), ties.view(np.float32),
                           (ties + np.uint32(1)).view(np.float32), nans.view(np.float32)])


def test_bf16_matches_hand_rounding():
    x = _special_f32(np.random.default_rng(1))
    t = parse_format("bf16").encode(x)
    assert t.codes.dtype == np.uint16
    want = np.array([ref_bf16(float(v)) for v in x], dtype=np.uint16)
    np.testing.assert_array_equal(t.codes, want)
    back = t.decode()
    assert np.array_equal(np.isnan(back), np.isnan(x))
    fin = np.isfinite(back)
    np.testing.assert_array_equal(bits_of(back[fin]), want[fin].astype(np.uint32) << 16)
    assert bits_of(parse_format("bf16").encode(np.float32([-0.0])).decode())[0] == 0x80000000


def test_fp16_matches_struct():
    x32 = _special_f32(np.random.default_rng(2))
    with np.errstate(invalid="ignore"):  # signalling NaN patterns quiet on the cast
        x = x32.astype(np.float64)
    sig = parse_format("fp16").encode(x32)  # the library handles them silently
    assert np.isnan(sig.codes).sum() == np.isnan(x32).sum()
    x = np.concatenate([x, np.random.default_rng(3).standard_normal(500) * 1e3])
    t = parse_format("fp16").encode(x)
    assert t.codes.dtype == np.float16
    want = np.array([ref_pack(float(v), "e") for v in x])
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(t.codes), nan)
    np.testing.assert_array_equal(bits_of(t.codes[~nan]), bits_of(want[~nan].astype(np.float16)))
    np.testing.assert_array_equal(t.decode(), t.codes.astype(np.float32))


def test_fp32_from_float64_matches_struct():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.standard_normal(500) * 10.0 ** rng.integers(-40, 40, 500),
                        [1e300, -1e300, -0.0, np.inf, np.nan]])
    t = parse_format("fp32").encode(x)
    want = np.array([ref_pack(float(v), "f") for v in x])
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(t.codes), nan)
    np.testing.assert_array_equal(t.codes[~nan], want[~nan].astype(np.float32))
    assert bits_of(t.codes)[-3] == 0x80000000


@pytest.mark.parametrize("spec", ["fp32", "fp16", "bf16"])
def test_float_every_pattern_decodes(spec):
    f = parse_format(spec)
    n = 1 << 16 if f.bits == 16 else 1 << 16
    pats = np.arange(n, dtype=np.uint32)
    if f.bits == 32:
        pats = pats * np.uint32(65537)  # spread over all exponents, incl. NaN/Inf/denormals
    raw = pats.astype(f.raw_dtype)
    t = StoredTensor(raw.view(f.storage_dtype).copy(), f)
    out = t.decode()
    assert out.dtype == np.float32
    if spec == "fp16":
        want = np.array([struct.unpack("<e", struct.pack("<H", int(p)))[0] for p in raw])
    elif spec == "bf16":
        want = np.array([struct.unpack("<f", struct.pack("<I", int(p) << 16))[0] for p in raw])
    else:
        want = np.array([struct.unpack("<f", struct.pack("<I", int(p)))[0] for p in raw])
    assert np.array_equal(np.isnan(out), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(out[ok], want[ok].astype(np.float32))


# --------------------------------------------------------------------------- symmetric int
@pytest.mark.parametrize("n", range(2, 9))
def test_int_closed_form(n):
    qmax = 2 ** (n - 1) - 1
    f = parse_format(f"int{n}")
    s = 0.125  # max|x| = qmax * 2^-3 gives an exact power-of-two scale
    k = np.arange(-qmax, qmax + 1)
    x = np.concatenate([k * s, (k[:-1] + 0.5) * s, [qmax * s * 3, -qmax * s * 3]])
    x = x.astype(np.float32)
    x[0] = -qmax * s  # keep max|x| = qmax*s after the saturation probes
    x[-2:] = [qmax * s, -qmax * s]
    t = f.encode(x)
    assert t.scale == np.float32(s) and t.scale.dtype == np.float32 and t.scale.shape == ()
    half = np.array([int(round(v)) for v in (k[:-1] + 0.5)])  # Python round: ties to even
    want = np.concatenate([k, half, [qmax, -qmax]])
    np.testing.assert_array_equal(t.codes, want)
    np.testing.assert_array_equal(t.decode(), (want * s).astype(np.float32))
    # saturation with an explicit scale
    t2 = f.encode_with(np.float32([100.0, -100.0, 0.49 * s]), np.float32(s))
    np.testing.assert_array_equal(t2.codes, [qmax, -qmax, 0])


@pytest.mark.parametrize("n", range(2, 9))
def test_int_all_codes_decode_and_normalize(n):
    f = parse_format(f"int{n}")
    lo, hi = -(2 ** (n - 1)), 2 ** (n - 1) - 1
    codes = np.arange(lo, hi + 1, dtype=np.int8)
    np.testing.assert_array_equal(f.decode(codes, np.float32(0.5)), codes * np.float32(0.5))
    raw = np.arange(2**n)  # every pattern of the n fault-visible bits
    want = np.array([r - 2**n if r >= 2 ** (n - 1) else r for r in raw], dtype=np.int8)
    np.testing.assert_array_equal(f.normalize_raw(raw).view(np.int8), want)
    # high garbage bits are ignored
    np.testing.assert_array_equal(f.normalize_raw(raw | (0xFF ^ (2**n - 1))).view(np.int8), want)
    if n < 8:
        with pytest.raises(FormatError, match=r"must lie in \[" + str(lo)):
            f.decode(np.int8([hi + 1]), np.float32(1))


def test_int_random_round_trip_bound():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    for n in (2, 4, 8):
        t = parse_format(f"int{n}").encode(x)
        qmax = 2 ** (n - 1) - 1
        assert t.scale == np.float32(np.abs(x).max()) / np.float32(qmax)
        assert np.abs(t.decode() - x).max() <= t.scale / 2 * (1 + 1e-5)
        assert np.abs(t.codes).max() == qmax


def test_per_channel_equals_per_slice():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32) * np.float32([[[1]], [[10]], [[0]],
                                                                        [[0.01]]])
    for spec in ("int4/ch", "uint5/ch"):
        f, g = parse_format(spec), parse_format(spec[:-3])
        t = f.encode(x)
        assert t.axis == 0 and t.scale.shape == (4,)
        for c in range(4):
            tc = g.encode(x[c])
            np.testing.assert_array_equal(t.codes[c], tc.codes)
            assert t.scale[c] == tc.scale
            if t.zero_point is not None:
                assert t.zero_point[c] == tc.zero_point
        assert t.scale[2] == 1  # all-zero channel
        np.testing.assert_array_equal(t.decode()[2], 0)
        t1 = f.encode(x, axis=-1)
        assert t1.axis == 2 and t1.scale.shape == (5,)
        np.testing.assert_array_equal(t1.codes[:, :, 1], g.encode(x[:, :, 1]).codes)


def test_zero_and_empty_tensors():
    for spec in ("int8", "int3/ch", "uint4", "uint8/ch", "q4.4", "fp16"):
        f = parse_format(spec)
        t = f.encode(np.zeros((3, 2), np.float32))
        np.testing.assert_array_equal(t.decode(), 0)
        if t.scale is not None:
            np.testing.assert_array_equal(t.scale, 1)
        e = f.encode(np.zeros((0, 4), np.float32)) if not f.per_channel else f.encode(
            np.zeros((2, 0), np.float32))
        assert e.decode().size == 0 and e.n_bits == 0


# --------------------------------------------------------------------------- affine
@pytest.mark.parametrize("n", range(2, 9))
def test_affine_closed_form(n):
    qmax = 2**n - 1
    f = parse_format(f"uint{n}")
    x = np.float32([-0.25, 0.25 * (qmax - 1), 0.0, 0.25, 0.125])
    t = f.encode(x)
    # range [-0.25, 0.25 (qmax-1)] -> S = 0.25, Z = 1 exactly; 0.125 is a tie -> even 0
    assert t.scale == np.float32(0.25) and t.zero_point == 1 and t.zero_point.dtype == np.int32
    want = [0, qmax, 1, 2, 1 + round(0.5)]
    np.testing.assert_array_equal(t.codes, want)
    np.testing.assert_array_equal(t.decode()[:4], x[:4])
    codes = np.arange(qmax + 1, dtype=np.uint8)
    np.testing.assert_array_equal(f.decode(codes, np.float32(0.5), np.int32(2)),
                                  (codes.astype(np.float32) - 2) * np.float32(0.5))
    np.testing.assert_array_equal(f.normalize_raw(np.arange(256)), np.arange(256) & qmax)


def test_affine_one_signed_tensors():
    f = parse_format("uint8")
    pos = f.encode(np.float32([0.5, 1.0, 2.0]))
    assert pos.zero_point == 0
    neg = f.encode(np.float32([-0.5, -1.0, -2.0]))
    assert neg.zero_point == 255
    np.testing.assert_allclose(neg.decode(), [-0.5, -1.0, -2.0], atol=neg.scale / 2)
    sat = f.encode_with(np.float32([-10, 10]), np.float32(0.1), np.int32(5))
    np.testing.assert_array_equal(sat.codes, [0, 105])


# --------------------------------------------------------------------------- fixed point
def test_fixed_point_closed_form_and_saturation():
    f = parse_format("q4.4")
    x = np.float32([0.0, 0.0625, 0.03125, 0.09375, -8.0, 7.9375, 100.0, -100.0, -0.03125])
    t = f.encode(x)
    np.testing.assert_array_equal(t.codes, [0, 1, 0, 2, -128, 127, 127, -128, 0])
    assert t.scale is None
    np.testing.assert_array_equal(t.decode(), t.codes.astype(np.float32) / 16)
    g = parse_format("q16.16")
    v = np.float64([1234.56789, -32768.0, 40000.0, 2.0**-17 * 3])
    tg = g.encode(v)
    np.testing.assert_array_equal(tg.codes, [round(1234.56789 * 65536), -(2**31), 2**31 - 1, 2])
    h = parse_format("q1.31")
    th = h.encode(np.float32([-1.0, 1.0, 0.5]))
    np.testing.assert_array_equal(th.codes, [-(2**31), 2**31 - 1, 2**30])
    np.testing.assert_array_equal(th.decode(), np.float32([-1.0, 1.0, 0.5]))
    q3 = parse_format("q2.1")  # 3-bit codes stored sign-extended in int8
    np.testing.assert_array_equal(q3.normalize_raw([4, 3, 7]).view(np.int8), [-4, 3, -1])
    np.testing.assert_array_equal(q3.decode(np.int8([-4, 3])), np.float32([-2.0, 1.5]))
    with pytest.raises(FormatError, match="normalize_raw"):
        q3.decode(np.int8([4]))


# --------------------------------------------------------------------------- StoredTensor
def test_stored_tensor_views_touch_copy():
    t = parse_format("int4").encode(np.float32([[1, -1], [0.5, 0]]))
    assert t.shape == (2, 2) and t.size == 4 and t.n_bits == 16
    r = t.raw()
    assert r.dtype == np.uint8 and np.shares_memory(r, t.codes)
    r[0, 0] = 0xF9  # -7
    assert t.codes[0, 0] == -7
    v = t.version
    t.touch()
    assert t.version == v + 1
    c = t.copy()
    assert c.version == t.version and not np.shares_memory(c.codes, t.codes)
    c.codes[0, 1] = 3
    c.scale[...] = 2
    assert t.codes[0, 1] == -7 and t.scale != 2
    f32 = parse_format("fp32").encode(np.float32([1.0]))
    assert f32.raw()[0] == 0x3F800000 and f32.n_bits == 32
    assert parse_format("uint8/ch").encode(np.ones((3, 2))).n_bits == 48


# --------------------------------------------------------------------------- error paths
def test_nan_inf_into_integer_formats_names_tensor():
    for spec in ("int8", "uint4/ch", "q4.4"):
        with pytest.raises(FormatError, match=r"'conv1.weight'.*1 NaN/Inf.*\(1, 0\)"):
            parse_format(spec).encode(np.float32([[1, 2], [np.nan, 0]]), name="conv1.weight")
    with pytest.raises(FormatError, match="input tensor"):
        parse_format("int8").encode_with(np.float32([np.inf]), np.float32(1))


def test_error_paths():
    i8 = parse_format("int8")
    with pytest.raises(DTypeError, match="expected dtype int8, found int16"):
        i8.decode(np.int16([1]), np.float32(1))
    with pytest.raises(DTypeError, match="real numeric"):
        i8.encode(np.array(["a"]))
    with pytest.raises(ConfigError, match="int8/ch"):
        i8.encode(np.ones(3), axis=0)
    with pytest.raises(ShapeError, match=r"scale shape expected \(\)"):
        i8.encode_with(np.ones(3), np.ones(3, np.float32))
    with pytest.raises(ShapeError, match=r"scale shape expected \(2,\)"):
        parse_format("int8/ch").encode_with(np.ones((2, 3)), np.ones(3, np.float32))
    with pytest.raises(ShapeError, match="channel axis"):
        parse_format("int8/ch").encode(np.float32(1.0))
    with pytest.raises(ConfigError, match="finite and > 0"):
        i8.encode_with(np.ones(3), np.float32(0))
    with pytest.raises(ConfigError, match="needs a scale"):
        i8.decode(np.int8([1]))
    with pytest.raises(ConfigError, match="no zero point"):
        i8.encode_with(np.ones(3), np.float32(1), np.int32(0))
    u4 = parse_format("uint4")
    with pytest.raises(ConfigError, match="needs a zero point"):
        u4.encode_with(np.ones(3), np.float32(1))
    with pytest.raises(ConfigError, match=r"\[0, 15\]"):
        u4.encode_with(np.ones(3), np.float32(1), np.int32(16))
    with pytest.raises(ConfigError, match="must be integer"):
        u4.encode_with(np.ones(3), np.float32(1), np.float32(1))
    with pytest.raises(ConfigError, match="no scale"):
        parse_format("fp16").encode_with(np.ones(3), np.float32(1))
    with pytest.raises(ConfigError, match="implied scale"):
        parse_format("q4.4").decode(np.int8([1]), np.float32(1))
    with pytest.raises(DTypeError, match="expected dtype float16"):
        StoredTensor(np.ones(3, np.float32), parse_format("fp16"))
    with pytest.raises(DTypeError, match="expected a Format"):
        StoredTensor(np.ones(3, np.float32), "fp32")
    with pytest.raises(ShapeError, match="axis 3 out of range"):
        StoredTensor(np.ones((2, 2), np.int8), parse_format("int8/ch"), np.ones(2), axis=3)
