"""Step functions: what one optimisation step does with a batch.

The training loop calls ``step.start_epoch(epoch, epochs)`` before every epoch and
``step(trainable, optimizer, x, labels)`` once per batch, and only reads the returned
:class:`StepResult`; everything between -- how many forward/backward passes, which loss
-- is the step function's business. :class:`PlainStep` is ordinary (QAT) training: one
forward in training mode, cross-entropy (plus an optional activation-L1 penalty,
:mod:`numharden.train.regularize`), one backward, one optimizer update. Whatever the
optimizer (SGD, Adam) does with the gradient is the optimizer's business, not the step's.

Sharpness-aware steps (:mod:`numharden.train.sharpness`: SAM, ASAM, SAQ) subclass it,
override :meth:`PlainStep.__call__` and reuse :meth:`PlainStep.loss_and_grad` twice; the
penalty is part of :meth:`PlainStep.loss`, so it is the objective both passes see.

Every step also measures the activation sparsity of its (first) forward pass: the
fraction of exact zeros in :func:`numharden.analysis.evaluate.activation_nodes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autograd import functional as F
from ..autograd.tensor import data_of
from .regularize import SparsityMeter, observers, parse_act_l1


@dataclass
class StepResult:
    """Outcome of one step.

    Attributes
    ----------
    loss : float
        The objective the step minimised (before the update).
    logits : ndarray, shape (N, K)
        Training-mode logits of the batch (for the batch accuracy).
    sparsity : float or None
        Fraction of zeros in the batch's activations (first forward pass), None if not
        measured or the network has no ReLU.
    """

    loss: float
    logits: np.ndarray
    sparsity: float | None = None


class PlainStep:
    """One forward (training mode), cross-entropy (+ penalty), backward, optimizer update.

    Parameters
    ----------
    act_l1 : float, str, dict or ActivationL1, optional
        Activation-sparsity penalty (:func:`numharden.train.regularize.parse_act_l1`);
        None or 0: plain cross-entropy.
    """

    name = "plain"
    passes = 1          # forward/backward passes per step
    penalty = None      # ActivationL1 or None

    def __init__(self, act_l1=None):
        self.penalty = parse_act_l1(act_l1)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the loop before epoch ``epoch`` (0-based) of ``epochs``."""

    def loss(self, trainable, x, labels, *, update_stats: bool = True, offsets=None,
             observe=None):
        """The objective on one batch: returns ``(loss Tensor (0-d), logits Tensor)``.

        ``offsets`` is passed to :meth:`Trainable.forward` (perturbed quantised weights),
        ``observe`` is called with every node output besides the penalty's collector."""
        collect = self.penalty.collector(trainable.graph, len(labels)) if self.penalty else None
        logits = trainable.forward(x, train=True, update_stats=update_stats, offsets=offsets,
                                   observe=observers(collect, observe))
        loss = F.cross_entropy(logits, labels)
        penalty = collect.total() if collect is not None else None
        return (loss if penalty is None else F.add(loss, penalty)), logits

    def loss_and_grad(self, trainable, x, labels, *, update_stats: bool = True, offsets=None,
                      observe=None):
        """Zero the gradients, evaluate :meth:`loss` and backpropagate; returns
        ``(loss float, logits ndarray)`` with the gradients in ``trainable.params``."""
        trainable.zero_grad()
        loss, logits = self.loss(trainable, x, labels, update_stats=update_stats,
                                 offsets=offsets, observe=observe)
        loss.backward()
        return float(data_of(loss)), np.asarray(data_of(logits))

    def __call__(self, trainable, optimizer, x, labels) -> StepResult:
        meter = SparsityMeter(trainable.graph)
        loss, logits = self.loss_and_grad(trainable, x, labels, observe=meter)
        optimizer.step()
        return StepResult(loss, logits, meter.sparsity)

    def describe(self) -> dict:
        """JSON-serialisable description recorded in the training recipe."""
        out = {"name": self.name}
        if self.penalty is not None:
            out["act_l1"] = self.penalty.describe()
        return out
