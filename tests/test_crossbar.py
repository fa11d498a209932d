"""numharden.crossbar: kernels against loop twins, closed-form statistics, masks, errors.

Statistical tests use fixed seeds and a two-sided 4-sigma threshold on an asymptotically
normal statistic: false-alarm rate 6.3e-5 per check.
"""

import math

import numpy as np
import pytest

import naive_crossbar as N
from numharden.crossbar import CrossbarInjector, VariationSpec
from numharden.crossbar import _kernels as K
from numharden.errors import ConfigError, ShapeError
from numharden.formats import StoredTensor, parse_format

Z = 4.0  # two-sided false-alarm rate 6.3e-5 per check


def tensor(shape=(6, 5), fmt="int8/ch", seed=0):
    rng = np.random.default_rng(seed)
    return parse_format(fmt).encode(rng.normal(size=shape).astype(np.float32))


def const_tensor(n, code=100, fmt="int8"):
    """n weights of one integer code (scale 1/127 after encoding max 1)."""
    st = parse_format(fmt).encode(np.ones(n, np.float32))
    st.codes[:] = code
    return st


def test_normals_match_twin():
    for key in (0, 1, 2**63 + 12345, 2**64 - 1):
        got = K._normals(np.uint64(key), 200)
        want = [N.normal(key, j) for j in range(200)]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_normals_are_standard():
    z = K._normals(np.uint64(7), 200_000)
    n = len(z)
    assert abs(z.mean()) < Z / math.sqrt(n)
    assert abs(z.var() - 1) < Z * math.sqrt(2 / n)
    # kurtosis of a normal is 3 (var of z^4 is 96): checks the tails, not only moments
    assert abs((z**4).mean() - 3) < Z * math.sqrt(96 / n)


SPECS = [
    dict(programming="gaussian", sigma=0.1, scaling="column"),
    dict(programming="lognormal", sigma=0.3, cell_bits=2, mapping="offset"),
    dict(programming="additive", sigma=0.05, cell_bits=3, g_min=1.0, stuck_on=0.05,
         stuck_off=0.05, read_noise=0.02),
    dict(programming="pcm", sigma=1.0, drift_time=3600.0, drift_compensation=True),
    dict(programming="gaussian", sigma=0.2, drift_nu=0.05, drift_nu_std=0.01,
         drift_time=100.0, mapping="offset", read_noise=0.1),
]


@pytest.mark.parametrize("kw", SPECS)
def test_program_and_read_match_twin(kw):
    st = tensor()
    st.protect = np.zeros(st.shape, bool)
    st.protect[1, 2] = True
    inj = CrossbarInjector({"w": st}, VariationSpec(**kw))
    draw = inj.draw(np.random.default_rng(3))
    lay = inj.layouts[0]
    ip = inj.ip.copy()
    ip[3] = lay.slices
    keys = [int(k) for k in draw.seed_keys[0]]
    rng = np.random.default_rng(3)  # replay the draw's stream: keys, then stuck cells
    rng.integers(0, 2**64, size=(1, 3), dtype=np.uint64)
    (ids, kinds), = inj._stuck(rng)[0]
    stuck = dict(zip(ids.tolist(), kinds.tolist()))
    assert bool(stuck) == bool(kw.get("stuck_on"))
    rec0, rect, gs, ss = N.program(list(lay.c), lay.off, lay.span, lay.prot, lay.rowlen,
                                   stuck, list(inj.par), list(ip), keys)
    np.testing.assert_allclose(draw.rec0[0], rec0, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(draw.rect[0], rect, rtol=1e-11, atol=1e-11)
    if draw.cells[0] is not None:
        key = N.mix((keys[2] + 5 * N.GOLDEN) & N.M64)
        want = N.read(list(lay.c), lay.off, lay.span, lay.prot, lay.rowlen, gs, ss,
                      list(inj.par), list(ip), key)
        got = inj.effective(draw, read=4)["w"].reshape(-1) / lay.unit
        np.testing.assert_allclose(got[~lay.prot], np.array(want)[~lay.prot] * draw.alpha[0],
                                   rtol=1e-5, atol=1e-5)
    assert inj.effective(draw)["w"][1, 2] == st.decode()[1, 2]  # protected: exact


@pytest.mark.parametrize("fmt", ["int8/ch", "int4", "uint8/ch", "q4.4"])
@pytest.mark.parametrize("cb", [None, 1, 2, 3])
@pytest.mark.parametrize("mapping", ["differential", "offset"])
def test_mapping_round_trip_is_exact(fmt, cb, mapping):
    st = tensor((7, 3, 2, 2), fmt, seed=1)
    inj = CrossbarInjector({"w": st}, VariationSpec(cell_bits=cb, mapping=mapping,
                                                    g_min=2.0, g_max=20.0))
    w = inj.effective(inj.draw(np.random.default_rng(0)))["w"]
    assert np.array_equal(w, st.decode())


def moments(spec, code=100, n=40_000, seed=5):
    st = const_tensor(n, code)
    inj = CrossbarInjector({"w": st}, spec)
    d = inj.draw(np.random.default_rng(seed))
    return d.rect[0], inj


def check_mean_var(x, mean, var, fourth=None):
    n = len(x)
    assert abs(x.mean() - mean) < Z * math.sqrt(var / n), (x.mean(), mean)
    m4 = fourth if fourth is not None else 3 * var**2  # normal unless given
    assert abs(x.var() - var) < Z * math.sqrt((m4 - var**2) / n), (x.var(), var)


def test_multiplicative_gaussian_closed_form():
    x, _ = moments(VariationSpec("gaussian", 0.2))
    check_mean_var(x, 100.0, (100 * 0.2) ** 2)


def test_lognormal_closed_form():
    s = 0.3
    x, _ = moments(VariationSpec("lognormal", s))
    m = 100 * math.exp(s**2 / 2)
    v = 100**2 * (math.exp(s**2) - 1) * math.exp(s**2)
    # E[(X-m)^4] of a lognormal: m^4 (w^4 + 2 w^3 + 3 w^2 - 3), w = exp(s^2)
    w = math.exp(s**2)
    m4 = m**4 * (w - 1) ** 2 * (w**4 + 2 * w**3 + 3 * w**2 - 3)
    check_mean_var(x, m, v, m4)


def test_differential_pair_additive_variance():
    """Equal additive noise on G+ and G-: var = 2 (span sigma g_max / dg)^2."""
    s, gmin, gmax = 0.02, 1.0, 25.0
    x, inj = moments(VariationSpec("additive", s, g_min=gmin, g_max=gmax))
    span = inj.layouts[0].span[0]
    check_mean_var(x, 100.0, 2 * (span * s * gmax / (gmax - gmin)) ** 2)


def test_pcm_programming_polynomial_closed_form():
    x, inj = moments(VariationSpec("pcm", 1.0, read_noise=0.0))
    k = inj.layouts[0].span[0] / 25.0  # code units per uS
    s_top = 0.26348 + 1.9650 - 1.1731  # sigma at g = g_max (the code is the layer max)
    s0 = 0.26348                       # at g = 0: the G- cell, clipped at 0 (half normal)
    mean = 100.0 - k * s0 / math.sqrt(2 * math.pi)
    var = k**2 * (s_top**2 + s0**2 * (0.5 - 1 / (2 * math.pi)))
    check_mean_var(x, mean, var, fourth=3 * var**2 * 1.2)  # near normal; loose 4th moment


def test_drift_power_law_closed_form():
    t, nu, sd = 3600.0, 0.06, 0.02
    x, inj = moments(VariationSpec("gaussian", 0.0, drift_time=t, drift_nu=nu, drift_nu_std=sd))
    L = math.log((t + 20.0) / 20.0)
    m = 100 * math.exp(-nu * L + (sd * L) ** 2 / 2)
    v = 100**2 * math.exp(-2 * nu * L) * (math.exp((sd * L) ** 2) - 1) * math.exp((sd * L) ** 2)
    w = math.exp((sd * L) ** 2)
    check_mean_var(x, m, v, m**4 * (w - 1) ** 2 * (w**4 + 2 * w**3 + 3 * w**2 - 3))


def test_drift_compensation_restores_scale():
    st = tensor((32, 64))
    spec = VariationSpec("pcm", 0.0, drift_time=1e6, read_noise=0.0, drift_compensation=True)
    inj = CrossbarInjector({"w": st}, spec)
    d = inj.draw(np.random.default_rng(0))
    w = inj.effective(d)["w"]
    ref = st.decode()
    assert d.alpha[0] > 1.5  # drift shrank the weights a lot ...
    ratio = np.abs(w.sum(1)).sum() / np.abs(ref.sum(1)).sum()
    assert abs(ratio - 1) < 1e-5  # ... and the calibration read undoes it exactly


def test_stuck_counts_are_binomial_and_avoid_protected():
    st = tensor((50, 40), "int8")
    st.protect = np.zeros(st.shape, bool)
    st.protect[:10] = True
    spec = VariationSpec(cell_bits=2, stuck_on=0.01, stuck_off=0.03)
    inj = CrossbarInjector({"w": st}, spec)
    n = inj.n_free_cells
    assert n == 40 * 40 * 2 * 4
    on = [inj.draw(np.random.default_rng(s)).n_stuck_on for s in range(200)]
    off = [inj.draw(np.random.default_rng(1000 + s)).n_stuck_off for s in range(200)]
    for counts, p in ((on, 0.01), (off, 0.03)):
        c = np.array(counts, float)
        assert abs(c.mean() - n * p) < Z * math.sqrt(n * p * (1 - p) / len(c))
        assert abs(c.var() / (n * p * (1 - p)) - 1) < Z * math.sqrt(2 / len(c))
    d = inj.draw(np.random.default_rng(9))
    w = inj.effective(d)["w"]
    assert np.array_equal(w[:10], st.decode()[:10])
    assert not np.array_equal(w[10:], st.decode()[10:])


def test_fully_protected_equals_baseline_and_protect_never_changes():
    st = tensor((8, 9))
    st.protect = np.ones(st.shape, bool)
    spec = VariationSpec("lognormal", 0.5, read_noise=0.2, stuck_on=0.1)
    inj = CrossbarInjector({"w": st}, spec)
    d = inj.draw(np.random.default_rng(0))
    assert d.n_stuck_on == 0
    assert np.array_equal(inj.effective(d, read=3)["w"], st.decode())


def test_reproducible_and_restore_is_bit_exact():
    st = tensor()
    params = {"w": st}
    spec = VariationSpec("lognormal", 0.4, cell_bits=2, read_noise=0.1, stuck_off=0.01)
    inj = CrossbarInjector(params, spec)
    a = inj.effective(inj.draw(np.random.default_rng(11)), read=2)["w"]
    b = inj.effective(inj.draw(np.random.default_rng(11)), read=2)["w"]
    assert np.array_equal(a, b)
    c = inj.effective(inj.draw(np.random.default_rng(11)), read=3)["w"]
    assert not np.array_equal(a, c)  # read noise is drawn anew per read
    codes = st.codes.copy()
    with inj.trial(np.random.default_rng(1)):
        assert params["w"] is not st and params["w"].fmt.spec == "fp32"
    assert params["w"] is st and np.array_equal(st.codes, codes)


def test_bit_faults_then_variation_reads_faulted_codes():
    st = tensor((4, 4), "int8")
    params = {"w": st}
    inj = CrossbarInjector(params, VariationSpec())
    st.codes[0, 0] = -st.codes[0, 0] - 1
    st.touch()
    assert np.array_equal(inj.effective(inj.draw(np.random.default_rng(0)))["w"], st.decode())


@pytest.mark.parametrize("kw, match", [
    (dict(programming="cauchy"), "programming"),
    (dict(sigma=0.1), "needs a programming model"),
    (dict(programming="gaussian", sigma=-1), "sigma"),
    (dict(g_min=30.0), "below g_max"),
    (dict(cell_bits=9), "cell_bits"),
    (dict(cell_bits=2, scaling="column"), "analog cells"),
    (dict(drift_time=10.0), "drift model"),
    (dict(programming="pcm", drift_nu=0.1), "its own drift"),
    (dict(stuck_on=0.6, stuck_off=0.6), "exceeds 1"),
    (dict(stuck_on=float("nan")), "stuck_on"),
])
def test_spec_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        VariationSpec(**kw)


def test_spec_round_trip_and_errors():
    s = VariationSpec("pcm", 1.0, cell_bits=2, drift_time=60.0, drift_compensation=True)
    assert VariationSpec.from_dict(s.to_dict()) == s
    with pytest.raises(ConfigError, match="unknown fields"):
        VariationSpec.from_dict({"sigmaa": 1})
    with pytest.raises(ConfigError, match="integer codes"):
        CrossbarInjector({"w": tensor(fmt="fp32")}, VariationSpec(cell_bits=2))
    with pytest.raises(ShapeError, match="protect"):
        StoredTensor(np.zeros(3, np.int8), parse_format("int8"), np.float32(1),
                     protect=np.zeros(4, bool))


def test_bit_faults_honour_protect_and_file_round_trip(tmp_path):
    import h5py

    from numharden.faults import FaultInjector, FaultModel
    from numharden.io import load_model, save_model
    from numharden.models import zoo
    st = tensor((40, 50), "int8")
    st.protect = np.zeros(st.shape, bool)
    st.protect[::2] = True
    inj = FaultInjector({"w": st}, FaultModel(rate=0.05))
    assert inj.n_bits == 20 * 50 * 8
    before = st.codes.copy()
    faults = inj.sample(np.random.default_rng(0))
    assert len(faults) > 100 and not st.protect.reshape(-1)[faults.index].any()
    with inj.trial(np.random.default_rng(0)):
        assert np.array_equal(st.codes[::2], before[::2])
        assert not np.array_equal(st.codes[1::2], before[1::2])
    st.protect[:] = True
    assert len(FaultInjector({"w": st}, FaultModel(rate=0.5)).sample(
        np.random.default_rng(1))) == 0
    model = zoo.build("lenet5", weight_format="int8/ch", seed=0)
    name = next(n for n in model.params if n.endswith("weight"))
    mask = np.zeros(model.params[name].shape, bool)
    mask.flat[::3] = True
    model.params[name].protect = mask
    path = save_model(model, tmp_path / "m.h5")
    again = load_model(path)
    assert np.array_equal(again.params[name].protect, mask)
    with h5py.File(path, "r+") as f:  # the mask is covered by the checksum
        f["params"][name]["protect"][0] = 1 - f["params"][name]["protect"][0]
    with pytest.raises(Exception, match="(?i)checksum|sha256"):
        load_model(path)
