"""Loss landscapes: filter normalisation, the centre point, both surfaces, sharpness."""

import numpy as np
import pytest

from numharden.analysis import evaluate
from numharden.analysis.landscape import (filter_normalized_direction, landscape, perturbable,
                                          sharpness)
from numharden.data import load_dataset
from numharden.errors import ConfigError
from numharden.formats import parse_format
from numharden.models import build


@pytest.fixture(scope="module")
def setup():
    m = build("lenet5", weight_format="int4/ch", abits=4, seed=2,
              meta={"normalization": {"mean": [0.286], "std": [0.353]}})
    ds = load_dataset("fashion-mnist").subset(64)
    return m, ds


def test_directions_are_filter_normalized(setup):
    m, _ = setup
    d = filter_normalized_direction(m, np.random.default_rng(0))
    assert set(d) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"}
    for name, v in d.items():
        w = m.params[name].decode().astype(np.float64)
        for i in range(w.shape[0]):
            assert np.linalg.norm(v[i]) == pytest.approx(np.linalg.norm(w[i]), rel=1e-12)
    # a second draw is a different direction, the same seed the same one
    again = filter_normalized_direction(m, np.random.default_rng(0))
    other = filter_normalized_direction(m, np.random.default_rng(1))
    assert all(np.array_equal(d[k], again[k]) for k in d)
    assert not np.allclose(d["fc1.weight"], other["fc1.weight"])
    assert "fc1.bias" in perturbable(m, include_bias_bn=True)


@pytest.mark.parametrize("mode", ["requant", "float"])
def test_centre_is_the_model_loss(setup, mode):
    m, ds = setup
    r = landscape(m, ds.images, ds.labels, points=3, span=0.5, mode=mode)
    ref = evaluate(m, ds)
    assert r["loss"][1] == pytest.approx(ref["loss"], rel=1e-6)
    assert r["center_loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert r["accuracy"][1] == ref["accuracy"]


def test_float_surface_point_equals_hand_perturbation(setup):
    m, ds = setup
    r = landscape(m, ds.images, ds.labels, points=2, span=0.3, mode="float", seed=5)
    d = filter_normalized_direction(m, np.random.default_rng(5))
    hand = m.copy()
    for name, v in d.items():
        w = m.params[name].decode().astype(np.float64) + 0.3 * v
        hand.params[name] = parse_format("fp32").encode(w.astype(np.float32))
    assert r["loss"][1] == pytest.approx(evaluate(hand, ds)["loss"], rel=1e-6)


def test_requant_surface_requantizes(setup):
    m, ds = setup
    r = landscape(m, ds.images, ds.labels, points=2, span=0.3, mode="requant", seed=5)
    d = filter_normalized_direction(m, np.random.default_rng(5))
    hand = m.copy()
    for name, v in d.items():
        st = m.params[name]
        w = st.decode().astype(np.float64) - 0.3 * v
        hand.params[name] = st.fmt.encode(w.astype(np.float32), axis=st.axis)
    assert hand.params["fc1.weight"].fmt.spec == "int4/ch"
    assert r["loss"][0] == pytest.approx(evaluate(hand, ds)["loss"], rel=1e-6)


def test_two_d_grid_and_sharpness(setup):
    m, ds = setup
    r = landscape(m, ds.images, ds.labels, dims=2, points=3, span=0.2, mode="float")
    assert r["loss"].shape == (3, 3) and r["loss"][1, 1] == pytest.approx(r["center_loss"])
    s = sharpness(m, ds.images, ds.labels, radius=0.2, directions=3, mode="float")
    assert len(s["rises"]) == 6 and s["rise"] == pytest.approx(np.mean(s["rises"]))
    # a larger radius moves further from the centre
    big = sharpness(m, ds.images, ds.labels, radius=1.0, directions=3, mode="float")
    assert np.mean(np.abs(big["rises"])) > np.mean(np.abs(s["rises"]))


def test_bad_options(setup):
    m, ds = setup
    with pytest.raises(ConfigError, match="dims"):
        landscape(m, ds.images, ds.labels, dims=3)
    with pytest.raises(ConfigError, match="mode"):
        landscape(m, ds.images, ds.labels, mode="nope", points=2)
    with pytest.raises(ConfigError, match="radius"):
        sharpness(m, ds.images, ds.labels, radius=0)
