"""Step functions: what one optimisation step does with a batch.

The training loop calls ``step(trainable, optimizer, x, labels)`` once per batch and only
reads the returned :class:`StepResult`; everything between -- how many forward/backward
passes, which loss -- is the step function's business. :class:`PlainStep` is ordinary
(QAT) training: one forward in training mode, cross-entropy, one backward, one optimizer
update. Variants are subclasses:

* a loss with extra terms (e.g. an activation-L1 penalty collected through the
  executor's ``observe`` callback) overrides :meth:`PlainStep.loss`;
* sharpness-aware steps (SAM / ASAM: gradient at w, perturb the latents by
  rho g/||g||, second forward/backward with ``update_stats=False``, restore, update; SAQ
  perturbs the *quantised* weights instead, through ``Trainable.forward(offsets=...)``)
  override :meth:`PlainStep.__call__` and reuse :meth:`PlainStep.loss_and_grad`, whose
  ``loss`` takes the same keywords.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autograd import functional as F
from ..autograd.tensor import data_of


@dataclass
class StepResult:
    """Outcome of one step.

    Attributes
    ----------
    loss : float
        The objective the step minimised (before the update).
    logits : ndarray, shape (N, K)
        Training-mode logits of the batch (for the batch accuracy).
    """

    loss: float
    logits: np.ndarray


class PlainStep:
    """One forward (training mode), cross-entropy, backward, optimizer update."""

    name = "plain"

    def loss(self, trainable, x, labels, *, update_stats: bool = True, offsets=None):
        """The objective on one batch: returns ``(loss Tensor (0-d), logits Tensor)``.

        ``offsets`` is passed to :meth:`Trainable.forward` (perturbed quantised weights)."""
        logits = trainable.forward(x, train=True, update_stats=update_stats, offsets=offsets)
        return F.cross_entropy(logits, labels), logits

    def loss_and_grad(self, trainable, x, labels, *, update_stats: bool = True, offsets=None):
        """Zero the gradients, evaluate :meth:`loss` and backpropagate; returns
        ``(loss float, logits ndarray)`` with the gradients in ``trainable.params``."""
        trainable.zero_grad()
        loss, logits = self.loss(trainable, x, labels, update_stats=update_stats,
                                 offsets=offsets)
        loss.backward()
        return float(data_of(loss)), np.asarray(data_of(logits))

    def __call__(self, trainable, optimizer, x, labels) -> StepResult:
        loss, logits = self.loss_and_grad(trainable, x, labels)
        optimizer.step()
        return StepResult(loss, logits)

    def describe(self) -> dict:
        """JSON-serialisable description recorded in the training recipe."""
        return {"name": self.name}
