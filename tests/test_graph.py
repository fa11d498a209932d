"""Graph construction, shape inference, the inference plan and its cache."""

import numpy as np
import pytest

from numharden.errors import FormatError, MissingTensorError, ShapeError
from numharden.graph import Graph, GraphBuilder, Model, Node
from numharden.graph.graph import conv_out, pool_out
from numharden.models import ARCHS, build


def _ref_conv_nchw(x, w, b, stride, pad):
    """Direct convolution by einsum over padded windows (independent of numharden.ops)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return y + (0 if b is None else b[None, :, None, None])


def test_output_sizes_match_pytorch_rules():
    # values worked out from PyTorch's documented formulas
    assert conv_out(28, 5, 1, 2, 2, 1) == 28
    assert conv_out(32, 3, 2, 1, 1, 1) == 16
    assert conv_out(7, 3, 1, 2, 2, 2) == 7
    assert pool_out(5, 2, 2, 0, 0, 1, ceil_mode=False) == 2
    assert pool_out(5, 2, 2, 0, 0, 1, ceil_mode=True) == 3
    # last window would start in the right padding only -> dropped
    assert pool_out(4, 2, 2, 1, 1, 1, ceil_mode=True) == 3
    assert pool_out(6, 3, 3, 1, 1, 1, ceil_mode=True) == 3


def test_lenet_shapes():
    m = build("lenet5")
    s = m.graph.shapes
    assert s["conv1"] == (6, 28, 28) and s["pool1"] == (6, 14, 14)
    assert s["conv2"] == (16, 10, 10) and s["pool2"] == (16, 5, 5)
    assert s["flatten"] == (400,) and s["fc3"] == (10,)
    assert m.params["conv1.weight"].shape == (6, 1, 5, 5)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_zoo_builds_for_other_inputs(arch):
    m = build(arch, input_shape=(3, 32, 32), num_classes=7, abits=4, weight_format="int4/ch")
    assert m.num_classes == 7
    y = m.forward(np.zeros((2, 3, 32, 32), np.float32))
    assert y.shape == (2, 7) and np.isfinite(y).all()


def test_graph_errors_name_the_node():
    ok = Node("r", "relu", ["input"])
    with pytest.raises(FormatError, match="unknown op 'gelu'"):
        Graph([Node("g", "gelu", ["input"])], (1, 4, 4), "g")
    with pytest.raises(FormatError, match="reads 'nope'"):
        Graph([Node("r", "relu", ["nope"])], (1, 4, 4), "r")
    with pytest.raises(FormatError, match="used twice"):
        Graph([ok, Node("r", "relu", ["input"])], (1, 4, 4), "r")
    with pytest.raises(MissingTensorError, match="graph output 'x'"):
        Graph([ok], (1, 4, 4), "x")
    with pytest.raises(ShapeError, match="in_channels=3"):
        Graph([Node("c", "conv2d", ["input"], {"in_channels": 3, "out_channels": 4, "kernel": [3, 3],
                                                "stride": [1, 1], "padding": [0, 0, 0, 0],
                                                "dilation": [1, 1], "groups": 1},
                    {"weight": "c.weight"})], (1, 8, 8), "c")
    with pytest.raises(ShapeError, match="too small"):
        Graph([Node("p", "maxpool2d", ["input"], {"kernel": [5, 5], "stride": [1, 1],
                                                   "padding": [0, 0, 0, 0]})], (1, 3, 3), "p")


def test_missing_and_misshaped_params():
    m = build("lenet5")
    params = dict(m.params)
    del params["fc1.bias"]
    with pytest.raises(MissingTensorError, match="fc1.bias"):
        Model(m.graph, params)
    params = dict(m.params)
    params["fc1.weight"] = params["fc2.weight"]
    with pytest.raises(ShapeError, match=r"fc1.weight.*\(120, 400\)"):
        Model(m.graph, params)


def _small_model(seed=0, weight_format="fp32"):
    b = GraphBuilder((2, 7, 7), seed=seed)
    x = b.conv2d("conv", b.input, 3, 3, stride=2, padding=1, bias=True)
    x = b.relu("relu", b.batchnorm("bn", x))
    x = b.linear("fc", b.flatten("flat", x), 4)
    m = b.build(x, weight_format=weight_format)
    rng = np.random.default_rng(seed + 1)
    for role, lo, hi in (("weight", 0.5, 2.0), ("bias", -1, 1), ("running_mean", -1, 1),
                         ("running_var", 0.3, 2.0)):
        st = m.params[f"bn.{role}"]
        st.codes[...] = rng.uniform(lo, hi, st.shape).astype(np.float32)
        st.touch()
    return m


def _reference(m, x):
    p = {k: v.astype(np.float64) for k, v in m.float_params().items()}
    y = _ref_conv_nchw(x.astype(np.float64), p["conv.weight"], p["conv.bias"], 2, 1)
    sh = (1, -1, 1, 1)
    y = (y - p["bn.running_mean"].reshape(sh)) / np.sqrt(p["bn.running_var"].reshape(sh) + 1e-5)
    y = np.maximum(y * p["bn.weight"].reshape(sh) + p["bn.bias"].reshape(sh), 0)
    return y.reshape(len(x), -1) @ p["fc.weight"].T + p["fc.bias"]


@pytest.mark.parametrize("fold", [True, False])
def test_forward_matches_reference(fold):
    m = _small_model()
    x = np.random.default_rng(3).standard_normal((5, 2, 7, 7)).astype(np.float32)
    ref = _reference(m, x)
    np.testing.assert_allclose(m.forward(x, fold_bn=fold), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.forward(x, dtype=np.float64, fold_bn=fold), ref, rtol=1e-12, atol=1e-12)


def test_batchnorm_is_folded_only_where_allowed():
    m = _small_model()
    assert set(m._folds) == {"conv"}
    # densenet's batch norms read concatenations: never folded
    d = build("densenet", input_shape=(3, 16, 16))
    assert all(d.graph[c].op == "conv2d" for c in d._folds)
    assert not any(d.graph[bn.inputs[0]].op == "concat" for bn in d._folds.values())


@pytest.mark.parametrize("target", ["conv.weight", "bn.running_var", "bn.weight", "fc.weight"])
def test_faults_reach_folded_weights(target):
    """A change to any stored tensor (via its raw bits, as faults do) shows up in the
    output exactly as in a freshly built copy: folding happens after the fault."""
    m = _small_model(weight_format="int4/ch")
    x = np.random.default_rng(4).standard_normal((3, 2, 7, 7)).astype(np.float32)
    clean = m.forward(x)
    st = m.params[target]
    raw = st.raw()
    bit = st.fmt.bits - 2 if st.fmt.kind == "int" else 21  # a mantissa bit of fp32
    raw ^= raw.dtype.type(1 << bit)  # one bit of every value, in place
    if st.fmt.kind == "int":  # keep int4 codes sign-extended in their int8 storage
        raw[...] = st.fmt.normalize_raw(raw)
    st.touch()
    faulty = m.forward(x)
    fresh = m.copy().forward(x)  # new cache, derived from the faulted storage
    assert not np.array_equal(faulty, clean)
    np.testing.assert_array_equal(faulty, fresh)
    np.testing.assert_allclose(faulty, _reference(m, x), rtol=1e-4, atol=1e-4)


def test_cache_recomputes_only_touched_layers(monkeypatch):
    m = _small_model()
    x = np.zeros((1, 2, 7, 7), np.float32)
    m.forward(x)
    calls = []
    original = m._compute
    monkeypatch.setattr(m, "_compute", lambda node, dtype, bn: calls.append(node.name) or original(node, dtype, bn))
    m.forward(x)
    assert calls == []
    m.params["fc.bias"].touch()
    m.forward(x)
    assert calls == ["fc"]
    m.params["bn.running_mean"].touch()
    m.forward(x)
    assert calls == ["fc", "conv"]


def test_input_validation():
    m = _small_model()
    with pytest.raises(ShapeError, match=r"expected \(N, 2, 7, 7\)"):
        m.forward(np.zeros((1, 3, 7, 7), np.float32))
    with pytest.raises(TypeError, match="float ndarray"):
        m.forward(np.zeros((1, 2, 7, 7), np.uint8))
    bad = np.zeros((1, 2, 7, 7), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.forward(bad)


def test_checksum_tracks_storage():
    m = _small_model()
    c0 = m.checksum()
    assert m.copy().checksum() == c0
    m.params["fc.weight"].raw().reshape(-1)[0] ^= 1
    assert m.checksum() != c0
