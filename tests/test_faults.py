"""Fault kernels against their loop twins, apply/undo/replay, HDF5 layout, error paths.

Statistical properties of the sampler are in tests/test_faults_stats.py.
"""

import h5py
import numpy as np
import pytest

from numharden.errors import ConfigError, DTypeError, FormatError, MissingTensorError
from numharden.faults import (
    FaultInjector,
    FaultList,
    FaultModel,
    activation_fault_hook,
    apply_faults,
    inject_faults,
    parse_bits,
    sample_faults,
    undo_faults,
)
from numharden.faults import _kernels as K
from numharden.formats import parse_format

from naive_faults import (
    naive_apply,
    naive_apply_array,
    naive_fault_code,
    naive_locate,
    naive_locate_values,
    naive_undo,
)

SPECS = {"conv.w": ("fp32", (5, 7)), "bf": ("bf16", (13,)), "half": ("fp16", (3, 4)),
         "i4": ("int4", (6, 5)), "i8ch": ("int8/ch", (4, 9)), "u3": ("uint3", (11,)),
         "q12": ("q4.12", (8,)), "q3": ("q2.1", (9,)), "q32": ("q16.16", (7,)),
         "scalar": ("fp32", ())}


def make_model(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, (spec, shape) in SPECS.items():
        x = rng.standard_normal(shape).astype(np.float32) * 3
        if name == "conv.w":
            x[0, :4] = [np.nan, np.inf, -np.inf, -0.0]
        out[name] = parse_format(spec).encode(x)
    return out


def raws(model):
    return {k: t.raw().copy() for k, t in model.items()}


def same_raw(model, saved):
    return all(np.array_equal(model[k].raw(), saved[k]) for k in model)


def random_list(model, k, rng):
    """Arbitrary fault list with repeated values and bits, all kinds."""
    names = tuple(model)
    ts = [model[n] for n in names]
    tensor = rng.integers(0, len(ts), k).astype(np.int32)
    tensor[tensor == names.index("scalar")] = 0
    index = np.array([rng.integers(0, ts[t].size) for t in tensor])
    index[: k // 4] = 0  # force collisions on the same value
    bit = np.array([rng.integers(0, ts[t].fmt.bits) for t in tensor], np.uint8)
    kind = rng.integers(0, 3, k).astype(np.uint8)
    return FaultList(names, [t.fmt.spec for t in ts], [t.size for t in ts], tensor, index,
                     bit, kind)


# --------------------------------------------------------------------------- kernels
def test_fault_code_matches_twin_exhaustively():
    for bits, width, sx in [(4, 8, True), (3, 8, False), (8, 8, True), (2, 8, True),
                            (12, 16, True), (16, 16, False), (32, 32, True)]:
        xs = range(2**width) if width <= 8 else np.random.default_rng(bits).integers(
            0, 2**width, 300)
        for x in xs:
            x = naive_fault_code(int(x), 0, 2, bits, width, sx)  # any valid stored code
            x = naive_fault_code(x, 0, 0, bits, width, sx)
            for b in range(bits):
                for kind in range(3):
                    got = K._fault_code(np.uint64(x), b, kind, bits, width, sx)
                    assert int(got) == naive_fault_code(x, b, kind, bits, width, sx)


def test_locate_matches_twin():
    rng = np.random.default_rng(1)
    sizes = np.array([3, 0, 5, 1, 7], np.int64)
    positions = [np.array([0, 3, 5]), np.array([1]), np.array([7]), np.array([0, 1]),
                 np.arange(4)]
    npos = np.array([len(p) for p in positions], np.int64)
    table = np.zeros((5, 32), np.int64)
    for i, p in enumerate(positions):
        table[i, : len(p)] = p
    cum = np.concatenate([[0], np.cumsum(sizes * npos)])
    g = np.sort(rng.choice(cum[-1], 20, replace=False)).astype(np.int64)
    g[0], g[-1] = 0, cum[-1] - 1
    t, i, b = np.empty(20, np.int32), np.empty(20, np.int64), np.empty(20, np.uint8)
    K._locate(g, cum, npos, table, t, i, b)
    assert list(zip(t.tolist(), i.tolist(), b.tolist())) == naive_locate(g, sizes, positions)
    vcum = np.concatenate([[0], np.cumsum(sizes)])
    v = np.arange(vcum[-1], dtype=np.int64)
    t2, i2 = np.empty(len(v), np.int32), np.empty(len(v), np.int64)
    K._locate_values(v, vcum, t2, i2)
    assert list(zip(t2.tolist(), i2.tolist())) == naive_locate_values(v, sizes)


def test_apply_and_undo_match_twin():
    rng = np.random.default_rng(2)
    model = make_model()
    fl = random_list(model, 400, rng)
    clean = raws(model)
    twin = [clean[n].reshape(-1).copy() for n in fl.names]
    ts = [model[n] for n in fl.names]
    want = naive_apply(twin, [t.fmt.bits for t in ts], [t.fmt.sign_extends for t in ts],
                       fl.tensor, fl.index, fl.bit, fl.kind)
    v0 = [t.version for t in ts]
    out = apply_faults(model, fl)
    assert out.applied and not fl.applied
    np.testing.assert_array_equal(out.old, want[0])
    np.testing.assert_array_equal(out.new, want[1])
    np.testing.assert_array_equal(out.masked, want[2])
    for t, r, ch, v in zip(ts, twin, want[3], v0):
        np.testing.assert_array_equal(t.raw().reshape(-1), r)
        assert t.version == v + ch
        t.decode() if t.fmt.kind != "float" else None  # every faulted code stays decodable
    naive_undo(twin, out.tensor, out.index, out.old)
    undo_faults(model, out)
    assert same_raw(model, clean)
    for t, r, ch, v in zip(ts, twin, want[3], v0):
        np.testing.assert_array_equal(t.raw().reshape(-1), r)
        assert t.version == v + 2 * ch


@pytest.mark.parametrize("dtype,spec", [(np.uint8, "uint4"), (np.float32, "fp32"),
                                        (np.uint8, "uint8"), (np.int8, "int3")])
def test_apply_array_matches_twin(dtype, spec):
    rng = np.random.default_rng(3)
    fmt = parse_format(spec)
    base = fmt.encode(rng.standard_normal(64)).codes if spec != "fp32" else rng.standard_normal(
        64).astype(np.float32)
    raw = base.view(fmt.raw_dtype).copy()
    twin = raw.copy()
    idx = rng.integers(0, 64, 50)
    bit = rng.integers(0, fmt.bits, 50).astype(np.uint8)
    kind = rng.integers(0, 3, 50).astype(np.uint8)
    n = K._apply_array(raw, idx, bit, kind, fmt.bits, fmt.sign_extends)
    assert n == naive_apply_array(twin, idx, bit, kind, fmt.bits, fmt.sign_extends)
    np.testing.assert_array_equal(raw, twin)


# --------------------------------------------------------------------------- injector
def test_inject_undo_restores_bit_exactly_and_touches():
    model = make_model()
    clean = raws(model)
    inj = FaultInjector(model, FaultModel(0.2, kind="mix", mix=(2, 1, 1)))
    rng = np.random.default_rng(4)
    for _ in range(5):
        v0 = {k: t.version for k, t in model.items()}
        with inj.trial(rng) as fl:
            assert len(fl) > 0 and fl.applied
            changed = {fl.names[t] for t in fl.tensor[~fl.masked]}
            assert not same_raw(model, clean)
            for k, t in model.items():
                assert t.version == v0[k] + (k in changed)
        assert same_raw(model, clean)
        for k, t in model.items():
            assert t.version == v0[k] + 2 * (k in changed)


def test_injector_follows_replaced_tensors():
    """Replacing a StoredTensor (or its codes) after building the injector is picked up;
    a changed format is refused instead of faulting the wrong bits."""
    model = make_model()
    inj = FaultInjector(model, FaultModel(1.0, include="u3"))
    model["u3"] = parse_format("uint3").encode(np.zeros(11))
    fl = inj.inject(np.random.default_rng(0))
    np.testing.assert_array_equal(model["u3"].codes, 7)  # all three bits flipped
    model["u3"].codes = np.zeros(11, np.uint8)
    inj.inject(np.random.default_rng(0))
    np.testing.assert_array_equal(model["u3"].codes, 7)
    inj.undo(fl)
    model["u3"] = parse_format("uint4").encode(np.zeros(11))
    with pytest.raises(FormatError, match="expects format uint3"):
        inj.inject(np.random.default_rng(0))
    del model["u3"]
    with pytest.raises(MissingTensorError, match="no longer in the model"):
        inj.inject(np.random.default_rng(0))


def test_rate_one_closed_forms():
    model = make_model()
    clean = raws(model)
    fl = inject_faults(model, FaultModel(1.0), np.random.default_rng(5))
    assert len(fl) == sum(t.n_bits for t in model.values()) and fl.n_masked == 0
    for k, t in model.items():
        fmt = t.fmt
        want = fmt.normalize_raw(clean[k].astype(np.uint64) ^ np.uint64(fmt.raw_mask))
        np.testing.assert_array_equal(t.raw(), want)
    undo_faults(model, fl)
    assert same_raw(model, clean)
    fl = inject_faults(model, FaultModel(1.0, kind="sa1", bits="sign", include="conv.*"),
                       np.random.default_rng(5))
    assert len(fl) == 35 and fl.n_masked == int(np.signbit(clean["conv.w"].view(np.float32)).sum())
    assert np.all(np.signbit(model["conv.w"].codes))
    fl0 = inject_faults(model, FaultModel(0.0), np.random.default_rng(5))
    assert len(fl0) == 0


def test_filters_select_bits_and_tensors():
    model = make_model()
    rng = np.random.default_rng(6)
    fl = sample_faults(model, FaultModel(0.5, include=["conv.*", "bf"], bits="exponent"), rng)
    assert set(fl.names) == {"conv.w", "bf"}
    b = fl.bit[fl.tensor == 0]
    assert b.min() >= 23 and b.max() <= 30
    b = fl.bit[fl.tensor == 1]
    assert b.min() >= 7 and b.max() <= 14
    fl = sample_faults(model, FaultModel(1.0, include="i*", exclude="i8*", bits="msb"), rng)
    assert fl.names == ("i4",) and set(fl.bit.tolist()) == {3} and len(fl) == 30
    fl = sample_faults(model, FaultModel(1.0, include="i8ch", bits="0-1,7"), rng)
    assert set(fl.bit.tolist()) == {0, 1, 7} and len(fl) == 36 * 3
    inj = FaultInjector(model, FaultModel(0.1, bits="0,1", exclude=["scalar"]))
    assert inj.n_bits == 2 * sum(t.size for k, t in model.items() if k != "scalar")
    np.testing.assert_array_equal(parse_bits("mantissa,sign", "fp16"), list(range(10)) + [15])
    np.testing.assert_array_equal(parse_bits(None, "uint3"), [0, 1, 2])
    np.testing.assert_array_equal(parse_bits(" LSB , 2-3", "int4"), [0, 2, 3])


def test_per_value_mode_hits_each_value_once():
    model = make_model()
    fl = sample_faults(model, FaultModel(0.7, per="value", bits="0-1"), np.random.default_rng(7))
    pairs = set(zip(fl.tensor.tolist(), fl.index.tolist()))
    assert len(pairs) == len(fl) and fl.bit.max() <= 1


def test_sample_is_reproducible_and_rng_driven():
    model = make_model()
    m = FaultModel(0.05, kind="stuck", sa1_fraction=0.3)
    a = sample_faults(model, m, np.random.default_rng(8))
    b = sample_faults(model, m, np.random.default_rng(8))
    c = sample_faults(model, m, np.random.default_rng(9))
    assert a.same_as(b) and not a.same_as(c)


# --------------------------------------------------------------------------- replay / HDF5
def test_replay_and_hdf5_round_trip(tmp_path):
    model = make_model()
    fresh = make_model()
    fl = inject_faults(model, FaultModel(0.1, kind="mix", mix=(1, 1, 1)), np.random.default_rng(10))
    path = tmp_path / "faults.h5"
    with h5py.File(path, "w") as f:
        fl.save(f.create_group("trial0"))
    with h5py.File(path, "r") as f:
        g = f["trial0"]
        assert g["tensor"].dtype == np.int32 and g["index"].dtype == np.int64
        assert g["bit"].dtype == np.uint8 and g["old"].dtype == np.uint32
        assert g["masked"].dtype == np.uint8 and g.attrs["n_faults"] == len(fl)
        loaded = FaultList.load(g)
    assert loaded.same_as(fl)
    out = apply_faults(fresh, loaded)
    assert out.same_as(fl)
    assert all(np.array_equal(model[k].raw(), fresh[k].raw()) for k in model)
    # replay on a model with different codes is detected and rolled back
    other = make_model(seed=1)
    saved = raws(other)
    with pytest.raises(FormatError, match="replay mismatch"):
        apply_faults(other, loaded)
    assert same_raw(other, saved)
    apply_faults(other, loaded, check=False)


def test_hdf5_load_errors(tmp_path):
    fl = sample_faults(make_model(), FaultModel(0.1), np.random.default_rng(11))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        fl.save(f.create_group("a"))
        with pytest.raises(FormatError, match="numharden_faultlist"):
            FaultList.load(f.create_group("empty"))
        del f["a/bit"]
        with pytest.raises(FormatError, match=r"missing dataset\(s\) \['bit'\]"):
            FaultList.load(f["a"])
        f["a"].create_dataset("bit", data=fl.bit.astype(np.int64))
        with pytest.raises(FormatError, match="'bit' expected 1-d uint8"):
            FaultList.load(f["a"])


# --------------------------------------------------------------------------- errors
def test_error_paths():
    model = make_model()
    for bad in (-0.1, 1.5, float("nan"), "1e-3", True):
        with pytest.raises(ConfigError, match="rate"):
            FaultModel(bad)
    with pytest.raises(ConfigError, match="kind"):
        FaultModel(0.1, kind="bridge")
    with pytest.raises(ConfigError, match="only used by kind='stuck'"):
        FaultModel(0.1, sa1_fraction=0.2)
    with pytest.raises(ConfigError, match="mix"):
        FaultModel(0.1, kind="mix")
    with pytest.raises(ConfigError, match="mix weights"):
        FaultModel(0.1, kind="mix", mix=(0, 0, 0))
    with pytest.raises(ConfigError, match="'bit' or 'value'"):
        FaultModel(0.1, per="word")
    with pytest.raises(MissingTensorError, match=r"'fc\.\*' matches no tensor.*conv\.w"):
        FaultInjector(model, FaultModel(0.1, include=["conv.*", "fc.*"]))
    with pytest.raises(MissingTensorError, match="'nothere'"):
        FaultInjector(model, FaultModel(0.1, exclude="nothere"))
    with pytest.raises(ConfigError, match="leaves no tensor"):
        FaultInjector(model, FaultModel(0.1, include="i4", exclude="i*"))
    with pytest.raises(ConfigError, match=r"tensor 'i4'.*'exponent' is not valid for format int4"):
        FaultInjector(model, FaultModel(0.1, include="i4", bits="exponent"))
    with pytest.raises(ConfigError, match=r"tensor 'u3'.*bits 0\.\.2"):
        FaultInjector(model, FaultModel(0.1, include="u3", bits="2-4"))
    with pytest.raises(DTypeError, match="Generator"):
        sample_faults(model, FaultModel(0.1), 42)
    with pytest.raises(DTypeError, match="StoredTensor"):
        FaultInjector({"a": np.zeros(3)}, FaultModel(0.1))
    fl = sample_faults(model, FaultModel(0.1), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="not applied"):
        undo_faults(model, fl)
    with pytest.raises(MissingTensorError, match="does not have"):
        apply_faults({"conv.w": model["conv.w"]}, fl)
    changed = dict(model)
    changed["i4"] = parse_format("int8").encode(np.zeros((6, 5)))
    with pytest.raises(FormatError, match="tensor 'i4' expects format int4"):
        apply_faults(changed, fl)
    fl.bit[0] = 40
    with pytest.raises(FormatError, match="outside its tensor"):
        apply_faults(model, fl)


# --------------------------------------------------------------------------- activations
class _Node:
    def __init__(self, name):
        self.name = name


def test_activation_hook_filters_and_in_place():
    rng = np.random.default_rng(12)
    hook = activation_fault_hook(FaultModel(0.5, include="conv*", bits="0-2"), rng)
    codes = np.zeros((4, 8), np.uint8)
    hook(_Node("fc"), codes, parse_format("uint4"))
    assert hook.n_calls == 0 and not codes.any()
    hook(_Node("conv1"), codes, parse_format("uint4"))
    assert codes.any() and codes.max() <= 7 and hook.n_faults == hook.n_changed > 0
    x = np.ones((2, 3, 3, 4), np.float32)
    before = x.copy()
    full = activation_fault_hook(FaultModel(0.05, bits="exponent"), rng)
    full(_Node("a"), x, "fp32")
    diff = (x.view(np.uint32) ^ before.view(np.uint32))
    assert diff.any() and not (diff & np.uint32(0x807FFFFF)).any()
    a, b = np.zeros(500, np.uint8), np.zeros(500, np.uint8)
    full2 = activation_fault_hook(FaultModel(0.1), np.random.default_rng(1))
    full2(_Node("a"), a, "uint8")
    full2(_Node("a"), b, "uint8")
    assert not np.array_equal(a, b)  # fresh faults at every call
    c = np.zeros(500, np.uint8)
    activation_fault_hook(FaultModel(0.1), np.random.default_rng(1))(_Node("a"), c, "uint8")
    np.testing.assert_array_equal(a, c)  # same seed, same faults


def test_activation_hook_errors():
    rng = np.random.default_rng(13)
    with pytest.raises(MissingTensorError, match="node glob 'x.*'"):
        activation_fault_hook(FaultModel(0.1, include="x.*"), rng, names=["a", "b"])
    hook = activation_fault_hook(FaultModel(0.1), rng, names=["a"])
    with pytest.raises(DTypeError, match="needs float32"):
        hook(_Node("a"), np.zeros(3, np.float64), "fp32")
    with pytest.raises(DTypeError, match="integer codes"):
        hook(_Node("a"), np.zeros(3, np.float32), "uint4")
    with pytest.raises(DTypeError, match="writable C-contiguous"):
        hook(_Node("a"), np.zeros((4, 4), np.float32)[:, ::2], "fp32")
    with pytest.raises(ConfigError, match="node 'a'.*'mantissa'"):
        activation_fault_hook(FaultModel(0.1, bits="mantissa"), rng)(
            _Node("a"), np.zeros(3, np.uint8), "uint4")
    with pytest.raises(DTypeError, match="Generator"):
        activation_fault_hook(FaultModel(0.1), None)
