"""Trainable: latents, fake-quantised provider (STE), batch-norm statistics, clip
calibration, and export to a Model whose inference matches the evaluation-mode forward."""

import numpy as np
import pytest

from numharden.autograd import Tensor, functional as F, no_grad
from numharden.errors import ConfigError, DTypeError, ShapeError
from numharden.formats import parse_format
from numharden.graph import GraphBuilder, Model
from numharden.models import build
from numharden.train import Trainable


def _perturb(t: Trainable, seed=0, scale=0.05):
    """Move latents off their initial (quantised) grid and give BN non-trivial stats."""
    rng = np.random.default_rng(seed)
    for name, p in t.params.items():
        if t.kinds[name] == "clip":
            p.data[...] = rng.uniform(0.5, 2.0, p.shape)
        else:
            p.data[...] += (rng.standard_normal(p.shape) * scale).astype(p.dtype)
    for name, b in t.buffers.items():
        b[...] = rng.uniform(0.5, 2.0, b.shape) if name.endswith("var") else \
            rng.normal(0, 0.2, b.shape)


def _images(shape, n=6, seed=1):
    return np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)


def test_latents_kinds_formats_and_buffers():
    m = build("resnet20", input_shape=(3, 8, 8), weight_format="int4/ch", abits=4)
    t = Trainable(m)
    assert set(t.params) | set(t.buffers) == set(m.params)
    assert t.kinds["conv1.weight"] == "weight" and t.kinds["fc.bias"] == "bias"
    assert t.kinds["bn1.weight"] == "bn" and t.kinds["relu_q.clip"] == "clip"
    assert "bn1.running_var" in t.buffers and "bn1.running_var" not in t.params
    assert t.formats["conv1.weight"].spec == "int4/ch" and t.axes["conv1.weight"] == 0
    assert t.formats["fc.bias"].spec == "fp32"
    np.testing.assert_array_equal(t.params["conv1.weight"].data, m.params["conv1.weight"].decode())
    assert all(p.requires_grad and p.data.dtype == np.float32 for p in t.params.values())
    t.params["conv1.weight"].data[...] = 0  # latents are copies
    assert m.params["conv1.weight"].decode().any()


def test_export_matches_eval_forward_lenet_w4a4_float32():
    m = build("lenet5", weight_format="int4/ch", abits=4, seed=3)
    t = Trainable(m)
    _perturb(t)
    x = _images((1, 28, 28))
    with no_grad():
        mine = t.forward(x)
    exported = t.to_model()
    np.testing.assert_allclose(exported.forward(x), mine, rtol=1e-5, atol=1e-5)
    for name in ("conv1.weight", "fc2.weight"):
        st = exported.params[name]
        want = parse_format("int4/ch").encode(t.params[name].data, axis=0)
        assert st.fmt.spec == "int4/ch" and st.axis == 0
        np.testing.assert_array_equal(st.codes, want.codes)
        np.testing.assert_array_equal(st.scale, want.scale)
    assert exported.params["relu1_q.clip"].fmt.spec == "fp32"
    np.testing.assert_array_equal(exported.params["relu1_q.clip"].decode(),
                                  t.params["relu1_q.clip"].data)


@pytest.mark.parametrize("arch", ["resnet20", "mobilenetv2", "densenet"])
def test_export_matches_eval_forward_with_folded_batchnorm_float64(arch):
    """BN folded into the conv (Model.forward) vs conv then a*x + c (Trainable), 4-bit
    weights and activations, float64: equal to rounding."""
    m = build(arch, input_shape=(3, 8, 8), weight_format="int4/ch", abits=4, seed=2)
    t = Trainable(m, dtype=np.float64)
    _perturb(t)
    for p in t.params.values():  # fp32-representable, as the export stores them
        p.data[...] = p.data.astype(np.float32)
    for b in t.buffers.values():
        b[...] = b.astype(np.float32)
    x = _images((3, 8, 8)).astype(np.float64)
    with no_grad():
        mine = t.forward(x)
    exported = t.to_model({"note": "x"})
    np.testing.assert_allclose(exported.forward(x, dtype=np.float64), mine, rtol=1e-9,
                               atol=1e-9)
    assert exported.meta["note"] == "x" and exported.meta["arch"] == arch
    assert exported.params["bn1.running_var" if arch == "resnet20" else
                           next(n for n in t.buffers)].fmt.spec == "fp32"


def test_export_matches_eval_forward_float32_batchnorm_no_act_quant():
    m = build("resnet20", input_shape=(3, 8, 8), weight_format="int8/ch", seed=4)
    t = Trainable(m)
    _perturb(t)
    x = _images((3, 8, 8))
    with no_grad():
        mine = t.forward(x)
    np.testing.assert_allclose(t.to_model().forward(x), mine, rtol=1e-4, atol=1e-4)


def test_straight_through_gradient_equals_gradient_at_the_quantised_weights():
    """Latent gradients of an int4 Trainable equal the gradients of an fp32 Trainable whose
    weights are the int4 values: the STE passes dL/dw_q unchanged to the latent."""
    m = build("lenet5", input_shape=(1, 12, 12), weight_format="int4/ch", abits=4, seed=5)
    q = Trainable(m, dtype=np.float64)
    _perturb(q)
    f = Trainable(m, weight_format="fp32", dtype=np.float64)
    for name, p in f.params.items():
        p.data[...] = q.params[name].data
        if q.kinds[name] == "weight":
            p.data[...] = q.formats[name].encode(q.params[name].data, axis=0).decode()
    x = _images((1, 12, 12)).astype(np.float64)
    labels = np.array([0, 1, 2, 3, 4, 5])
    for t in (q, f):
        F.cross_entropy(t.forward(x, train=True), labels).backward()
    for name in q.params:
        np.testing.assert_allclose(q.params[name].grad, f.params[name].grad, rtol=1e-10,
                                   atol=1e-12, err_msg=name)
    assert np.abs(q.params["relu1_q.clip"].grad).max() > 0


def test_offsets_perturb_the_quantised_weights():
    """forward(offsets=e) equals an fp32 network holding q(w) + e; the latent gradient is
    the gradient at q(w) + e (what SAQ's second pass needs)."""
    m = build("lenet5", input_shape=(1, 12, 12), weight_format="int4/ch", seed=8)
    q = Trainable(m, dtype=np.float64)
    f = Trainable(m, weight_format="fp32", dtype=np.float64)
    rng = np.random.default_rng(3)
    offsets = {n: rng.normal(0, 0.01, q.params[n].shape) for n in ("conv2.weight", "fc1.bias")}
    for name, p in f.params.items():
        p.data[...] = q.params[name].data
        if q.kinds[name] == "weight":
            p.data[...] = q.formats[name].encode(q.params[name].data, axis=0).decode()
        p.data[...] += offsets.get(name, 0.0)
    x = _images((1, 12, 12)).astype(np.float64)
    labels = np.arange(6) % 10
    F.cross_entropy(q.forward(x, offsets=offsets), labels).backward()
    F.cross_entropy(f.forward(x), labels).backward()
    for name in q.params:
        np.testing.assert_allclose(q.params[name].grad, f.params[name].grad, rtol=1e-10,
                                   atol=1e-12, err_msg=name)
    with pytest.raises(ShapeError, match="offset for 'fc1.bias'"):
        q.forward(x, offsets={"fc1.bias": np.zeros(3)})
    with pytest.raises(ConfigError, match="conv / linear"):
        q.forward(x, offsets={"nope": np.zeros(3)})


def test_batchnorm_running_statistics_follow_pytorch():
    m = build("resnet20", input_shape=(3, 8, 8), seed=6)
    t = Trainable(m, dtype=np.float64)
    _perturb(t)
    before = {k: v.copy() for k, v in t.buffers.items()}
    inputs = {}

    def grab(node, out):
        for reader in t.graph.consumers[node.name]:
            if t.graph[reader].op == "batchnorm":
                inputs[reader] = np.asarray(getattr(out, "data", out)).reshape(-1, out.shape[-1])

    x = _images((3, 8, 8)).astype(np.float64)
    t.forward(x, train=True, update_stats=False)
    t.forward(x)  # evaluation mode
    for k in t.buffers:
        np.testing.assert_array_equal(t.buffers[k], before[k])
    t.forward(x, train=True, observe=grab)
    assert len(inputs) == sum(n.op == "batchnorm" for n in t.graph.nodes)
    for bn, v in inputs.items():
        n = v.shape[0]
        np.testing.assert_allclose(t.buffers[f"{bn}.running_mean"],
                                   0.9 * before[f"{bn}.running_mean"] + 0.1 * v.mean(0),
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(t.buffers[f"{bn}.running_var"],
                                   0.9 * before[f"{bn}.running_var"]
                                   + 0.1 * v.var(0) * n / (n - 1), rtol=1e-12)


def _tiny_graph():
    b = GraphBuilder((2, 3, 3), seed=0)
    x = b.act_quant("q1", b.relu("r1", b.input), 4)
    x = b.linear("fc", b.flatten("flat", x), 5)
    x = b.act_quant("q2", b.relu("r2", x), 3)
    return b.build(b.linear("out", x, 3), weight_format="int4/ch")


def test_calibration_sets_clips_layer_by_layer():
    t = Trainable(_tiny_graph(), dtype=np.float64)
    x = np.random.default_rng(7).standard_normal((50, 2, 3, 3))
    clips = t.calibrate_clips(x, percentile=90.0)
    c1 = np.percentile(np.maximum(x, 0), 90.0)
    s1 = c1 / 15
    q1 = np.rint(np.clip(x, 0, c1) / s1) * s1  # the second layer sees quantised inputs
    w = parse_format("int4/ch").encode(t.params["fc.weight"].data, axis=0).decode()
    h = q1.reshape(50, -1) @ w.T + t.params["fc.bias"].data
    c2 = np.percentile(np.maximum(h, 0), 90.0)
    assert clips == {"q1.clip": pytest.approx(c1), "q2.clip": pytest.approx(c2, rel=1e-6)}
    assert t.params["q2.clip"].data[0] == pytest.approx(c2, rel=1e-6)
    # an all-zero input keeps the clip
    t.calibrate_clips(-np.abs(x))
    assert t.params["q1.clip"].data[0] == pytest.approx(c1)
    with pytest.raises(ConfigError, match="percentile"):
        t.calibrate_clips(x, percentile=0.0)


def test_input_gradient_and_normalize():
    t = Trainable(_tiny_graph(), dtype=np.float64)
    x = Tensor(np.random.default_rng(8).standard_normal((4, 2, 3, 3)), requires_grad=True)
    F.sum(t.forward(x)).backward()
    assert x.grad.shape == (4, 2, 3, 3)
    m = build("lenet5", meta={"normalization": {"mean": [0.3], "std": [0.2]}})
    images = np.random.default_rng(9).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(Trainable(m).normalize(images), m.normalize(images))


def test_weight_format_override_and_unreferenced_tensors():
    m = build("lenet5")  # fp32
    m.params["extra.tensor"] = parse_format("int8").encode(np.arange(4.0))
    t = Trainable(m, weight_format="int4/ch")
    assert t.formats["fc1.weight"].spec == "int4/ch" and t.formats["fc1.bias"].spec == "fp32"
    out = t.to_model()
    assert out.params["fc1.weight"].fmt.spec == "int4/ch"
    np.testing.assert_array_equal(out.params["extra.tensor"].codes,
                                  m.params["extra.tensor"].codes)


def test_errors():
    with pytest.raises(ConfigError, match="needs a numharden Model"):
        Trainable("lenet5")
    m = build("resnet20", input_shape=(3, 8, 8))
    with pytest.raises(DTypeError, match="float32 or float64"):
        Trainable(m, dtype=np.float16)
    bad = Model(m.graph, dict(m.params))
    bad.params["bn1.weight"] = parse_format("fp16").encode(np.ones(16, np.float32))
    with pytest.raises(ConfigError, match="bn1.weight"):
        Trainable(bad)
    t = Trainable(m)
    with pytest.raises(ShapeError, match="expected"):
        t.forward(np.zeros((2, 3, 9, 8), np.float32))
    with pytest.raises(DTypeError, match="normalize"):
        t.forward(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(DTypeError, match="dtype"):
        t.forward(Tensor(np.zeros((2, 3, 8, 8), np.float64), requires_grad=True))
    b = GraphBuilder((1, 1, 1))
    one = b.build(b.flatten("f", b.batchnorm("bn", b.conv2d("c", b.input, 2, 1))))
    with pytest.raises(ShapeError, match="at least 2"):
        Trainable(one).forward(np.ones((1, 1, 1, 1), np.float32), train=True)
