"""The training loop: seeded shuffling, scheduled optimizer steps, per-epoch evaluation.

Progress goes through a callback (house rule 11): ``callback(event)`` receives a
:class:`StepEvent` after every optimizer step and an :class:`EpochEvent` after every
epoch (``event.kind`` is ``'step'`` or ``'epoch'``), enough for a live progress bar.

The step function (:mod:`numharden.train.steps`, :mod:`numharden.train.sharpness`) is
given as an object or as a method spec (``'saq'``, ``{'name': 'saq', 'rho': 0.05}``);
its ``describe()`` goes into the recipe.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import __version__, config
from ..analysis.evaluate import evaluate as evaluate_model
from ..autograd import functional as F, no_grad
from ..data import Dataset
from ..errors import ConfigError
from .optim import make_optimizer
from .schedule import make_schedule
from .regularize import SparsityMeter
from .sharpness import make_step
from .trainable import Trainable

DEFAULT_OPTIMIZER = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                     "weight_decay": 5e-4}
DEFAULT_SCHEDULE = {"name": "cosine", "warmup_epochs": 0}
DEFAULT_CALIBRATION = {"batches": 4, "percentile": 99.9}


@dataclass
class StepEvent:
    """Sent after every optimizer step (``step`` counts from 0 within the epoch).

    ``loss`` is the step's objective (cross-entropy plus any activation penalty);
    ``sparsity`` the fraction of zero activations of the batch (None if not measured)."""

    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    loss: float
    accuracy: float
    images_per_s: float
    lr: float
    sparsity: float | None = None
    kind: str = "step"


@dataclass
class EpochEvent:
    """Sent after every epoch; ``test_*`` are None without evaluation data.

    ``train_sparsity`` is the fraction of zero activations over the epoch's training
    batches (training mode), ``test_sparsity`` over the evaluation data."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    test_loss: float | None
    test_accuracy: float | None
    seconds: float
    images_per_s: float
    lr: float
    train_sparsity: float | None = None
    test_sparsity: float | None = None
    kind: str = "epoch"


@dataclass
class History:
    """What happened during training.

    Attributes
    ----------
    epochs : list of dict
        One :class:`EpochEvent` (as a dict) per epoch.
    step_loss, step_accuracy, step_lr, step_sparsity : list of float
        Per optimizer step: batch loss, batch accuracy (training mode), learning rate,
        activation sparsity (None where the step did not measure it).
    """

    epochs: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)
    step_accuracy: list = field(default_factory=list)
    step_lr: list = field(default_factory=list)
    step_sparsity: list = field(default_factory=list)


def evaluate(trainable: Trainable, data: Dataset, batch_size: int | None = None) -> dict:
    """Accuracy, mean cross-entropy and activation sparsity of ``trainable`` in
    evaluation mode (running BN statistics, fake-quantised weights) on raw ``data``; no
    gradients are recorded."""
    bs = int(batch_size or config.get("batch_size"))
    correct, loss_sum = 0, 0.0
    meter = SparsityMeter(trainable.graph)
    with no_grad():
        for start in range(0, len(data), bs):
            labels = data.labels[start:start + bs]
            logits = trainable.forward(trainable.normalize(data.images[start:start + bs]),
                                       observe=meter)
            loss_sum += float(F.cross_entropy(logits.astype(np.float64), labels)) * len(labels)
            correct += int((logits.argmax(axis=1) == labels).sum())
    n = max(len(data), 1)
    return {"accuracy": correct / n, "loss": loss_sum / n, "sparsity": meter.sparsity}


def _normalization(data: Dataset) -> dict:
    """Per-channel mean and std of the (uint8 scaled to [0, 1]) training images."""
    x = data.images.astype(np.float64)
    if data.images.dtype == np.uint8:
        x /= 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = x.std(axis=(0, 2, 3))
    return {"mean": [round(float(v), 4) for v in mean], "std": [round(float(v), 4) for v in std]}


def _check_data(data, what: str, trainable: Trainable) -> None:
    if not isinstance(data, Dataset):
        raise ConfigError(f"{what} must be a numharden Dataset, found {type(data).__name__}; "
                          "load one with numharden.data.load_dataset")
    data.check_for_model(trainable.graph.num_classes, trainable.graph.input_shape, what)


def _check_normalization(norm, channels: int) -> dict:
    """Validate ``{'mean': [...], 'std': [...]}`` (1 or C finite values, std > 0)."""
    ok = isinstance(norm, dict) and set(norm) == {"mean", "std"}
    out = {}
    for key in ("mean", "std"):
        v = np.asarray(norm.get(key, []) if ok else [], dtype=object).ravel()
        try:
            f = [float(x) for x in v]
        except (TypeError, ValueError):
            f = []
        ok = ok and len(f) in (1, channels) and all(map(math.isfinite, f))
        out[key] = f
    if not ok or min(out["std"]) <= 0:
        raise ConfigError(f"train: normalization must be {{'mean': [...], 'std': [...]}} with "
                          f"1 or {channels} finite values each and std > 0, found {norm!r}; "
                          "e.g. {'mean': [0.2860], 'std': [0.3530]} for Fashion-MNIST")
    return out


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"train: {name} must be an int >= 1, found {value!r}")
    return int(value)


def train(model, train_data: Dataset, *, epochs: int, batch_size: int = 128,
          optimizer=None, schedule=None, seed: int = 0, eval_data: Dataset | None = None,
          callback=None, normalization: dict | None = None, calibration=None,
          step=None, drop_last: bool = False, eval_batch_size: int | None = None):
    """Quantization-aware training of a model; returns the exported model and history.

    Parameters
    ----------
    model : Model or Trainable
        A Model is wrapped in a new :class:`Trainable` (latents from its parameters,
        target formats from its stored tensors); a Trainable is trained in place.
    train_data : Dataset
        Raw images (uint8 or float) and labels.
    epochs : int
    batch_size : int
        Samples per step; the last batch of an epoch may be smaller (see drop_last).
    optimizer : str or dict, optional
        Spec for :func:`numharden.train.optim.make_optimizer`; default
        ``{'name': 'sgd', 'lr': 0.05, 'momentum': 0.9, 'nesterov': True,
        'weight_decay': 5e-4}`` (no decay on biases, batch norm and clips).
    schedule : str or dict, optional
        Spec for :func:`numharden.train.schedule.make_schedule` (times in epochs);
        default cosine annealing to 0 over all iterations.
    seed : int
        Seeds the ``numpy.random.Generator`` that shuffles every epoch.
    eval_data : Dataset, optional
        Evaluated after every epoch (evaluation mode) and, at the end, with the
        exported model.
    callback : callable, optional
        ``callback(event)`` with a :class:`StepEvent` or :class:`EpochEvent`.
    normalization : dict, optional
        ``{'mean': [...], 'std': [...]}`` per input channel, on images scaled to
        [0, 1]. Default: the model's ``meta['normalization']`` if set, else the mean
        and std of the training images. Recorded in ``meta['normalization']``.
    calibration : dict or False, optional
        Activation-clip calibration before training (models with act_quant nodes):
        ``{'batches': 4, 'percentile': 99.9}`` (default): ``batches * batch_size``
        training images drawn with a stream spawned from ``seed``, one pass, see
        :meth:`Trainable.calibrate_clips`. False keeps the model's clips.
    step : PlainStep, str or dict, optional
        Step function or method spec for :func:`numharden.train.sharpness.make_step`
        (``'plain'``, ``'sam'``, ``'asam'``, ``'saq'`` or ``{'name': 'saq', 'rho': 0.05,
        'act_l1': 1e-5, ...}``); default :class:`PlainStep`. Its ``describe()`` is
        recorded in the recipe.
    drop_last : bool
        Drop the last, incomplete batch of every epoch.
    eval_batch_size : int, optional
        Batch size of evaluation (default ``config.get('batch_size')``).

    Notes
    -----
    After every step the clips are projected onto ``[Trainable.clip_min, inf)`` and the
    run stops with a ConfigError if the loss or any latent is not finite.

    Returns
    -------
    model : Model
        Exported from the trained latents (:meth:`Trainable.to_model`), with
        ``meta['training']`` = {'recipe': all hyper-parameters, seed, data, numharden
        version; 'results': final accuracies, activation sparsity and per-epoch
        history}. If the model already held ``meta['training']`` (fine-tuning a trained
        model), that entry moves to ``meta['training']['previous']`` (a list, oldest
        first), so the whole history travels with the file.
    history : History
    """
    trainable = model if isinstance(model, Trainable) else Trainable(model)
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"train: seed must be an int >= 0, found {seed!r}")
    _check_data(train_data, "training data", trainable)
    if eval_data is not None:
        _check_data(eval_data, "evaluation data", trainable)
    n = len(train_data)
    steps_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    if steps_per_epoch == 0:
        raise ConfigError(f"train: batch_size {batch_size} exceeds the {n} training images "
                          "with drop_last=True; use a smaller batch")
    has_bn = any(nd.op == "batchnorm" for nd in trainable.graph.nodes)
    if has_bn and (batch_size == 1 or (not drop_last and n % batch_size == 1)):
        raise ConfigError(f"train: batch norm needs >= 2 images per batch, but {n} images in "
                          f"batches of {batch_size} leave a batch of 1; pass drop_last=True "
                          "or another batch size")

    trainable.meta["normalization"] = _check_normalization(
        normalization or trainable.meta.get("normalization") or _normalization(train_data),
        trainable.graph.input_shape[0])
    trainable.meta.setdefault("class_names", list(train_data.class_names))
    opt_spec = dict(DEFAULT_OPTIMIZER if optimizer is None else
                    ({"name": optimizer} if isinstance(optimizer, str) else optimizer))
    opt = make_optimizer(dict(opt_spec), trainable.params, trainable.kinds)
    sched_spec = DEFAULT_SCHEDULE if schedule is None else schedule
    sched = make_schedule(sched_spec, epochs=epochs, steps_per_epoch=steps_per_epoch)
    step_fn = make_step(step)
    if getattr(step_fn, "penalty", None) is not None:
        step_fn.penalty.bind(trainable.graph)  # unknown layer names fail before training
    rng = np.random.default_rng(seed)
    # calibration draws from its own stream so it does not shift the training shuffles
    calib_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    calib = _calibrate(trainable, train_data, batch_size, calib_rng, calibration)

    history = History()
    t_global = 0
    for epoch in range(epochs):
        t_epoch = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        zero_sum, zero_seen = 0.0, 0
        if hasattr(step_fn, "start_epoch"):
            step_fn.start_epoch(epoch, epochs)
        for i, (images, labels) in enumerate(train_data.batches(batch_size, rng)):
            if i == steps_per_epoch:
                break  # drop_last
            t0 = time.perf_counter()
            opt.set_lr_factor(sched(t_global))
            result = step_fn(trainable, opt, trainable.normalize(images), labels)
            hits = int((result.logits.argmax(axis=1) == labels).sum())
            dt = time.perf_counter() - t0
            loss_sum += result.loss * len(labels)
            correct += hits
            seen += len(labels)
            t_global += 1
            history.step_loss.append(result.loss)
            history.step_accuracy.append(hits / len(labels))
            history.step_lr.append(opt.lr)
            sparsity = getattr(result, "sparsity", None)
            history.step_sparsity.append(sparsity)
            if sparsity is not None:
                zero_sum += sparsity * len(labels)
                zero_seen += len(labels)
            trainable.project()
            bad = trainable.nonfinite()
            if bad or not math.isfinite(result.loss):
                what = f"loss is {result.loss}" if not bad else f"{bad[0]!r} holds NaN/Inf"
                raise ConfigError(f"training diverged at epoch {epoch + 1}, step {i + 1}: "
                                  f"{what}; lower the learning rate (now {opt.lr:g})")
            if callback is not None:
                callback(StepEvent(epoch, epochs, i, steps_per_epoch, result.loss,
                                   hits / len(labels), len(labels) / dt, opt.lr, sparsity))
        seconds = time.perf_counter() - t_epoch
        test = evaluate(trainable, eval_data, eval_batch_size) if eval_data is not None else None
        event = EpochEvent(epoch, epochs, loss_sum / seen, correct / seen,
                           None if test is None else test["loss"],
                           None if test is None else test["accuracy"],
                           seconds, seen / seconds, opt.lr,
                           zero_sum / zero_seen if zero_seen else None,
                           None if test is None else test["sparsity"])
        history.epochs.append(asdict(event))
        if callback is not None:
            callback(event)

    recipe = {
        "arch": trainable.meta.get("arch"),
        "weight_formats": sorted({trainable.formats[p].spec for p, k in trainable.kinds.items()
                                  if k == "weight"}),
        "epochs": epochs, "batch_size": batch_size, "drop_last": drop_last, "seed": int(seed),
        "optimizer": opt.spec,
        "schedule": sched.describe(), "step": step_fn.describe(), "calibration": calib,
        "normalization": trainable.meta["normalization"],
        "data": _describe(train_data), "eval_data": _describe(eval_data),
        "numharden_version": __version__,
    }
    results = {"final_train_loss": history.epochs[-1]["train_loss"],
               "final_train_accuracy_running": history.epochs[-1]["train_accuracy"],
               "epochs": [{k: v for k, v in e.items() if k not in ("kind", "epochs")}
                          for e in history.epochs]}
    exported = trainable.to_model()
    if eval_data is not None:
        final = evaluate_model(exported, eval_data, batch_size=eval_batch_size)
        results |= {"test_accuracy": final["accuracy"], "test_loss": final["loss"],
                    "test_sparsity": final["activation_sparsity"]}
    exported.meta["training"] = {"recipe": recipe, "results": results}
    earlier = trainable.meta.get("training")
    if earlier:  # training a trained model (fine-tuning): keep what came before, oldest first
        exported.meta["training"]["previous"] = (
            list(earlier.get("previous", [])) + [{k: v for k, v in earlier.items()
                                                  if k != "previous"}])
    trainable.meta["training"] = exported.meta["training"]
    return exported, history


def _describe(data: Dataset | None):
    if data is None:
        return None
    return {"name": data.name, "source": None if data.source is None else str(data.source),
            "n": len(data)}


def _calibrate(trainable: Trainable, data: Dataset, batch_size: int, rng, calibration):
    """Run clip calibration as configured; returns the recorded settings and clips."""
    if calibration is False or not any(nd.op == "act_quant" for nd in trainable.graph.nodes):
        return None
    spec = DEFAULT_CALIBRATION | dict(calibration or {})
    unknown = set(spec) - set(DEFAULT_CALIBRATION)
    if unknown:
        raise ConfigError(f"calibration: unknown option(s) {sorted(unknown)}; valid options "
                          f"are {sorted(DEFAULT_CALIBRATION)}")
    nb = _positive_int("calibration batches", spec["batches"])
    idx = rng.permutation(len(data))[:nb * batch_size]
    clips = trainable.calibrate_clips(trainable.normalize(data.images[np.sort(idx)]),
                                      spec["percentile"])
    return {"batches": nb, "percentile": float(spec["percentile"]),
            "clips": {k: round(v, 6) for k, v in clips.items()}}
