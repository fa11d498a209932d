"""The training loop: learning on a toy problem, seeded shuffling, schedule per step,
callbacks, the recorded recipe, step-function swapping, determinism and errors."""

import math

import numpy as np
import pytest

from numharden.analysis.evaluate import evaluate as evaluate_model
from numharden.data import Dataset, load_dataset
from numharden.errors import ConfigError, ShapeError
from numharden.graph import GraphBuilder
from numharden.models import build
from numharden.train import (EpochEvent, PlainStep, StepEvent, Trainable, make_schedule,
                             train)
from numharden import __version__


def _toy(n=120, seed=0, name="toy"):
    """Three classes: a bright 2x2 patch in one of three places on a noisy 1x6x6 image."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, 1, 6, 6)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 0, 2 * k:2 * k + 2, 1:3] = 250
    return Dataset(images, labels, ["a", "b", "c"], name=name)


def _net(seed=0, bn=False):
    b = GraphBuilder((1, 6, 6), seed=seed)
    x = b.conv2d("conv", b.input, 4, 3, padding=1)
    if bn:
        x = b.batchnorm("bn", x)
    x = b.act_quant("q", b.relu("relu", x), 4)
    return b.build(b.linear("fc", b.flatten("flat", x), 3), weight_format="int4/ch",
                   meta={"arch": "toy"})


ADAM = {"name": "adam", "lr": 0.02}


def test_learns_and_records_the_recipe():
    train_data, test_data = _toy(240), _toy(90, seed=1, name="toy-test")
    events = []
    model, hist = train(_net(), train_data, epochs=4, batch_size=32, optimizer=ADAM,
                        schedule={"name": "cosine", "warmup_epochs": 1}, seed=3,
                        eval_data=test_data, callback=events.append)
    steps = math.ceil(240 / 32)
    assert len(hist.step_loss) == len(hist.step_lr) == 4 * steps and len(hist.epochs) == 4
    assert np.mean(hist.step_loss[-steps:]) < 0.5 * np.mean(hist.step_loss[:steps])
    res = model.meta["training"]["results"]
    assert res["test_accuracy"] >= 0.95
    assert res["test_accuracy"] == evaluate_model(model, test_data)["accuracy"]
    rec = model.meta["training"]["recipe"]
    assert rec["optimizer"] == {"name": "adam", "lr": 0.02, "betas": [0.9, 0.999], "eps": 1e-8,
                                "weight_decay": 0.0, "decoupled": False,
                                "no_decay": ["bias", "bn", "clip"]}
    assert rec["schedule"]["name"] == "warmup" and rec["schedule"]["steps"] == steps
    assert (rec["seed"], rec["epochs"], rec["batch_size"]) == (3, 4, 32)
    assert rec["data"] == {"name": "toy", "source": None, "n": 240}
    assert rec["eval_data"]["name"] == "toy-test" and rec["numharden_version"] == __version__
    assert rec["arch"] == "toy" and rec["weight_formats"] == ["int4/ch"]
    assert set(rec["calibration"]["clips"]) == {"q.clip"}
    # default normalisation: mean / std of the training pixels in [0, 1]
    x = train_data.images / 255.0
    assert model.meta["normalization"]["mean"][0] == pytest.approx(x.mean(), abs=1e-4)
    assert model.meta["normalization"]["std"][0] == pytest.approx(x.std(), abs=1e-4)
    assert model.meta["class_names"] == ["a", "b", "c"]
    # callback: one StepEvent per step, one EpochEvent per epoch, in order
    kinds = [e.kind for e in events]
    assert kinds == (["step"] * steps + ["epoch"]) * 4
    s = [e for e in events if isinstance(e, StepEvent)]
    assert [e.loss for e in s] == hist.step_loss
    assert all(e.images_per_s > 0 and 0 <= e.accuracy <= 1 for e in s)
    assert s[-1].step == steps - 1 and s[-1].steps_per_epoch == steps and s[-1].epoch == 3
    ep = [e for e in events if isinstance(e, EpochEvent)]
    assert ep[-1].test_accuracy == hist.epochs[-1]["test_accuracy"]


def test_learning_rate_follows_the_schedule_per_step():
    data = _toy(64)
    _, hist = train(_net(), data, epochs=3, batch_size=16, optimizer={"name": "sgd",
                    "lr": 0.1, "momentum": 0.9}, schedule={"name": "cosine",
                    "eta_min_factor": 0.1}, calibration=False)
    sched = make_schedule({"name": "cosine", "eta_min_factor": 0.1}, epochs=3, steps_per_epoch=4)
    np.testing.assert_allclose(hist.step_lr, [0.1 * sched(t) for t in range(12)], rtol=1e-12)


class _Spy(PlainStep):
    """A swapped-in step function: records each batch, then does the plain step."""

    name = "spy"

    def __init__(self):
        self.batches = []

    def __call__(self, trainable, optimizer, x, labels):
        self.batches.append((x.copy(), labels.copy()))
        return super().__call__(trainable, optimizer, x, labels)


def test_shuffling_is_seeded_and_the_step_function_is_swappable():
    data = _toy(50)
    spy = _Spy()
    model, _ = train(_net(), data, epochs=2, batch_size=16, seed=11, step=spy,
                     calibration=False, normalization={"mean": [0.5], "std": [0.25]})
    rng = np.random.default_rng(11)
    want = [labels for _ in range(2) for _, labels in data.batches(16, rng)]
    assert [len(b[1]) for b in spy.batches] == [16, 16, 16, 2] * 2
    for (_, got), exp in zip(spy.batches, want):
        np.testing.assert_array_equal(got, exp)
    x0 = next(iter(data.batches(16, np.random.default_rng(11))))[0]
    np.testing.assert_allclose(spy.batches[0][0], (x0 / np.float32(255) - 0.5) / 0.25,
                               rtol=1e-6)
    assert model.meta["training"]["recipe"]["step"] == {"name": "spy"}
    assert model.meta["training"]["recipe"]["calibration"] is None


def test_same_seed_same_model_other_seed_differs():
    data = _toy(48)
    runs = [train(_net(), data, epochs=1, batch_size=16, seed=s, optimizer=ADAM)[0]
            for s in (5, 5, 6)]
    for name in runs[0].params:
        np.testing.assert_array_equal(runs[0].params[name].codes, runs[1].params[name].codes)
    assert any(not np.array_equal(runs[0].params[n].codes, runs[2].params[n].codes)
               for n in runs[0].params)


def test_trainable_is_trained_in_place_and_drop_last():
    data = _toy(50)
    t = Trainable(_net(bn=True))
    t.params["q.clip"].data[...] = 3.0
    before = t.params["conv.weight"].data.copy()
    model, hist = train(t, data, epochs=1, batch_size=16, drop_last=True, calibration=False)
    assert len(hist.step_loss) == 3 and hist.epochs[0]["train_accuracy"] is not None
    assert not np.array_equal(t.params["conv.weight"].data, before)
    assert t.params["q.clip"].data[0] != 3.0  # learned (PACT), not recalibrated
    assert t.meta["training"] is model.meta["training"]
    assert not np.array_equal(t.buffers["bn.running_var"], np.ones(4))


def test_lenet_w4a4_exported_accuracy_equals_last_epoch_evaluation():
    test = load_dataset("fashion-mnist", split="test")
    train_data, eval_data = test.subset(256), test.subset(np.arange(256, 512))
    model, hist = train(build("lenet5", weight_format="int4/ch", abits=4), train_data,
                        epochs=1, batch_size=64, eval_data=eval_data,
                        normalization={"mean": [0.2860], "std": [0.3530]})
    assert model.meta["training"]["results"]["test_accuracy"] == hist.epochs[-1]["test_accuracy"]
    assert model.params["fc1.weight"].fmt.spec == "int4/ch"
    assert model.meta["normalization"] == {"mean": [0.286], "std": [0.353]}


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(epochs=0), ConfigError, "epochs"),
    (dict(epochs=1, batch_size=True), ConfigError, "batch_size"),
    (dict(epochs=1, seed=-1), ConfigError, "seed"),
    (dict(epochs=1, calibration={"batch": 2}), ConfigError, "calibration"),
    (dict(epochs=1, normalization={"mean": [0.1]}), ConfigError, "normalization"),
    (dict(epochs=1, normalization={"mean": [0.1], "std": [0.0]}), ConfigError, "normalization"),
    (dict(epochs=1, optimizer={"name": "sgd", "lr": 0.1, "foo": 1}), ConfigError, "foo"),
    (dict(epochs=1, batch_size=100, drop_last=True), ConfigError, "batch_size"),
])
def test_bad_options(kwargs, err, match):
    with pytest.raises(err, match=match):
        train(_net(), _toy(50), **kwargs)


def test_bad_data_and_batch_of_one_with_batchnorm():
    with pytest.raises(ConfigError, match="Dataset"):
        train(_net(), np.zeros((4, 1, 6, 6)), epochs=1)
    other = Dataset(np.zeros((4, 1, 5, 5), np.uint8), np.zeros(4, np.int64), ["a"])
    with pytest.raises(ShapeError, match="shape"):
        train(_net(), other, epochs=1)
    with pytest.raises(ConfigError, match="batch of 1"):
        train(_net(bn=True), _toy(49), epochs=1, batch_size=16)


class _Blowup(PlainStep):
    """Plain step, then a latent or the reported loss turns non-finite."""

    def __init__(self, where):
        self.where = where

    def __call__(self, trainable, optimizer, x, labels):
        result = super().__call__(trainable, optimizer, x, labels)
        if self.where == "param":
            trainable.params["fc.bias"].data[1] = np.inf
        else:
            result.loss = float("nan")
        return result


@pytest.mark.parametrize("where, match", [("param", "'fc.bias' holds NaN/Inf"),
                                          ("loss", "loss is nan")])
def test_divergence_is_reported_with_step_and_lr(where, match):
    with pytest.raises(ConfigError, match=f"diverged at epoch 1, step 1: {match}; lower"):
        train(_net(), _toy(32), epochs=1, batch_size=16, step=_Blowup(where))


def test_clips_are_projected_onto_their_domain():
    t = Trainable(_net())
    train(t, _toy(32), epochs=1, batch_size=16, optimizer={"name": "sgd", "lr": 1e30},
          calibration=False)
    # an unconstrained update would have left a negative clip, which act_quant rejects
    assert t.params["q.clip"].data[0] == np.float32(Trainable.clip_min)
