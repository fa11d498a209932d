"""Activation-L1 regularisation: the penalty's value against a NumPy reference, gradients
of the regularised loss by central differences (float64), which nodes it reads, the
sparsity meter and the progress events, spec parsing and errors."""

import numpy as np
import pytest

from numharden.analysis.evaluate import activation_nodes, evaluate as evaluate_model
from numharden.autograd import gradcheck
from numharden.autograd.tensor import data_of
from numharden.data import Dataset
from numharden.errors import ConfigError
from numharden.graph import GraphBuilder
from numharden.models import build
from numharden.train import (ActivationL1, PlainStep, SparsityMeter, Trainable,
                             make_optimizer, parse_act_l1, train)


def _float_net(seed=0):
    """conv (fp32) -> relu -> maxpool -> flatten -> fc1 -> relu6 -> fc2: no quantiser, so
    the loss is differentiable away from kinks and central differences apply."""
    b = GraphBuilder((1, 6, 6), seed=seed)
    x = b.maxpool2d("pool", b.relu("relu1", b.conv2d("conv", b.input, 3, 3, padding=1)), 2)
    x = b.relu6("relu2", b.linear("fc1", b.flatten("flat", x), 7))
    return b.build(b.linear("fc2", x, 3), weight_format="fp32")


def _batch(n=6, seed=1, shape=(1, 6, 6)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)), rng.integers(0, 3, n)


def test_penalty_value_matches_numpy():
    tr = Trainable(_float_net(), dtype=np.float64)
    x, y = _batch()
    seen = {}
    base = PlainStep().loss(tr, x, y, observe=lambda n, o: seen.setdefault(n.name, data_of(o)))[0]
    pen = PlainStep({"lambda": 0.01, "per_layer": {"relu2": 0.3}}).loss(tr, x, y)[0]
    ref = 0.01 / len(y) * seen["relu1"].sum() + 0.3 / len(y) * seen["relu2"].sum()
    assert float(data_of(pen)) - float(data_of(base)) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("spec", [0.02, {"lambda": 0.0, "per_layer": {"relu2": 0.5}}])
def test_regularised_loss_gradients_by_central_differences(spec):
    tr = Trainable(_float_net(seed=2), dtype=np.float64)
    x, y = _batch(seed=3)
    step = PlainStep(spec)
    names = list(tr.params)

    def f(*tensors):
        return _loss_with(tr, step, x, y, dict(zip(names, tensors)))
    gradcheck(f, [tr.params[n].data for n in names], eps=1e-6, atol=1e-7, rtol=1e-6)


def _loss_with(tr, step, x, y, params):
    """step.loss with substitute latents (the Trainable's forward takes params=)."""
    forward = tr.forward
    tr.forward = lambda xx, **kw: forward(xx, params=params, **kw)
    try:
        return step.loss(tr, x, y)[0]
    finally:
        tr.forward = forward


def test_penalty_reads_relu_outputs_not_quantiser_outputs():
    m = build("lenet5", weight_format="int4/ch", abits=4, seed=0)
    pen = ActivationL1(1e-4)
    assert sorted(pen.bind(m.graph)) == ["relu1", "relu2", "relu3", "relu4"]
    assert activation_nodes(m.graph) == ["relu1_q", "relu2_q", "relu3_q", "relu4_q"]
    assert activation_nodes(_float_net().graph) == ["relu1", "relu2"]
    # the penalty sends no gradient to the clips: only the cross-entropy does
    tr = Trainable(m)
    x = np.random.default_rng(0).normal(size=(4, 1, 28, 28)).astype(np.float32)
    y = np.arange(4)
    grads = []
    for step in (PlainStep(), PlainStep(1e-3)):
        step.loss_and_grad(tr, x, y, update_stats=False)
        grads.append(tr.params["relu2_q.clip"].grad.copy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_sparsity_meter_counts_zeros_of_the_stored_activations():
    m = build("lenet5", weight_format="int4/ch", abits=4, seed=1)
    tr = Trainable(m)
    x = np.random.default_rng(2).normal(size=(5, 1, 28, 28)).astype(np.float32)
    meter, outs = SparsityMeter(m.graph), {}

    def both(node, out):
        meter(node, out)
        outs[node.name] = data_of(out)
    tr.forward(x, observe=both)
    names = activation_nodes(m.graph)
    zeros = sum(int((outs[n] == 0).sum()) for n in names)
    assert meter.sparsity == zeros / sum(outs[n].size for n in names)
    res = PlainStep()(tr, make_optimizer({"name": "sgd", "lr": 0.0}, tr.params, tr.kinds),
                      x, np.arange(5))
    assert 0.0 < res.sparsity < 1.0


def _toy(n=96, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, 1, 6, 6)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 0, 2 * k:2 * k + 2, 1:3] = 250
    return Dataset(images, labels, ["a", "b", "c"], name="toy")


def _qnet(seed=0):
    b = GraphBuilder((1, 6, 6), seed=seed)
    x = b.act_quant("q", b.relu("relu", b.conv2d("conv", b.input, 4, 3, padding=1)), 4)
    return b.build(b.linear("fc", b.flatten("flat", x), 3), weight_format="int4/ch")


def test_penalty_raises_sparsity_and_events_report_it():
    data = _toy()
    out = {}
    for lam in (0.0, 0.05):
        events = []
        model, hist = train(_qnet(), data, epochs=3, batch_size=16, seed=0, eval_data=data,
                            optimizer={"name": "adam", "lr": 0.02}, callback=events.append,
                            step={"name": "plain", "act_l1": lam})
        steps = [e for e in events if e.kind == "step"]
        epochs = [e for e in events if e.kind == "epoch"]
        assert all(0 <= e.sparsity <= 1 for e in steps)
        assert hist.step_sparsity == [e.sparsity for e in steps]
        assert epochs[-1].test_sparsity == pytest.approx(
            evaluate_model(model, data)["activation_sparsity"], abs=0.02)
        res = model.meta["training"]["results"]
        assert res["test_sparsity"] == evaluate_model(model, data)["activation_sparsity"]
        assert "train_sparsity" in res["epochs"][0]
        out[lam] = res["test_sparsity"]
        step_rec = model.meta["training"]["recipe"]["step"]
        assert ("act_l1" in step_rec) == (lam > 0)
    assert out[0.05] > out[0.0] + 0.05


@pytest.mark.parametrize("spec, lam, per", [
    ("1e-5", 1e-5, {}),
    ("relu1=1e-5, relu2=2e-5", 0.0, {"relu1": 1e-5, "relu2": 2e-5}),
    ("1e-5,relu4=0", 1e-5, {"relu4": 0.0}),
    (3e-4, 3e-4, {}),
])
def test_parse_act_l1(spec, lam, per):
    p = parse_act_l1(spec)
    assert p.lam == lam and p.per_layer == per


def test_parse_act_l1_zero_means_no_penalty():
    assert parse_act_l1(None) is None and parse_act_l1("0") is None and parse_act_l1(0.0) is None
    assert PlainStep(0).penalty is None


@pytest.mark.parametrize("spec, match", [
    ("-1e-5", "must be a finite number >= 0"),
    ("relu1=-2", "lambda of 'relu1' must be a finite number >= 0"),
    ("abc", "'abc' is not a number"),
    ("inf", "finite"),
    ({"lam": 1}, "unknown key"),
    (True, "must be a number"),
])
def test_bad_act_l1_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_act_l1(spec)


def test_unknown_layer_fails_before_training():
    with pytest.raises(ConfigError, match=r"\['relu9'\] are not ReLU"):
        train(_qnet(), _toy(32), epochs=1, batch_size=16, step={"name": "saq", "act_l1": "relu9=1e-4"})
