"""A synthetic trial spec with a known outcome distribution.

It follows the trial-runner protocol exactly but replaces the network by a small
probabilistic model, so the campaign machinery (seeding, statistics, store, backends)
can be tested, demonstrated and benchmarked without a model:

* ``n_faults ~ Binomial(n_bits, ber)``; each fault is masked with probability
  ``mask_prob`` (``n_masked ~ Binomial(n_faults, mask_prob)``); the others are effective.
* Each effective fault makes the whole output NaN with probability ``nan_prob`` (every
  image is then non-finite, an SDC and wrong); otherwise each image is hit by each
  effective fault with probability ``hit_prob * scale(group)``. A hit image changes its
  top-1 prediction (an SDC) and, if it was right, becomes wrong.
* The fault-free model classifies ``round(base_acc * n_images)`` images correctly.

The expected per-trial values have closed forms (see ``tests/naive_campaign.py``),
which the statistics tests use as ground truth.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .seeds import check_group

__all__ = ["SyntheticSpec", "SyntheticRunner"]


@dataclass(frozen=True)
class SyntheticSpec:
    """Picklable spec of a synthetic trial (see module docstring).

    Parameters
    ----------
    n_images : int
        Images per trial.
    n_bits : int
        Fault-visible bits of the imaginary model.
    base_acc : float
        Fault-free accuracy.
    mask_prob, hit_prob, nan_prob : float
        Probabilities described in the module docstring.
    group_scale : tuple of (group, float), optional
        Per-group multiplier of ``hit_prob`` for breakdown campaigns (default 1).
    work_seconds : float
        Sleep per trial, to imitate inference time in scheduling tests.
    model_tag : str
        Stands for the model weights: it alone determines :meth:`model_checksum`.
    """

    n_images: int = 1000
    n_bits: int = 100_000
    base_acc: float = 0.9
    mask_prob: float = 0.3
    hit_prob: float = 0.01
    nan_prob: float = 0.0
    group_scale: tuple = ()
    work_seconds: float = 0.0
    model_tag: str = "synthetic-v1"

    def __post_init__(self):
        if not (isinstance(self.n_images, int) and self.n_images >= 1
                and isinstance(self.n_bits, int) and self.n_bits >= 1):
            raise ConfigError(f"SyntheticSpec needs integer n_images >= 1 and n_bits >= 1, "
                              f"got {self.n_images!r}, {self.n_bits!r}")
        for name in ("base_acc", "mask_prob", "hit_prob", "nan_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"SyntheticSpec {name}={v!r} must be a probability in "
                                  f"[0, 1]")
        for g, s in self.group_scale:
            check_group(g)
            if not s >= 0.0:
                raise ConfigError(f"SyntheticSpec group_scale for {g!r} is {s!r}; "
                                  f"expected a float >= 0")
        if not self.work_seconds >= 0.0:
            raise ConfigError(f"SyntheticSpec work_seconds={self.work_seconds!r} must be "
                              f">= 0")

    def describe(self) -> dict:
        """Everything that determines results, except the "model" (``model_tag``)."""
        return {"kind": "synthetic", "n_images": self.n_images, "n_bits": self.n_bits,
                "base_acc": self.base_acc, "mask_prob": self.mask_prob,
                "hit_prob": self.hit_prob, "nan_prob": self.nan_prob,
                "group_scale": [[g, s] for g, s in self.group_scale]}

    def model_checksum(self) -> str:
        """SHA-256 of ``model_tag`` (stands for the checksum of model weights)."""
        return hashlib.sha256(self.model_tag.encode()).hexdigest()

    def build(self) -> SyntheticRunner:
        """The trial runner (cheap here; a real spec loads model and data once)."""
        return SyntheticRunner(self)

    def scale(self, group) -> float:
        """Multiplier of ``hit_prob`` for ``group`` (1 for None or unlisted groups)."""
        for g, s in self.group_scale:
            if g == group and type(g) is type(group):
                return float(s)
        return 1.0


class SyntheticRunner:
    """Callable ``runner(ber, trial, seed, group=None) -> dict`` of a SyntheticSpec."""

    def __init__(self, spec: SyntheticSpec):
        self.spec = spec
        self.n_correct0 = int(round(spec.base_acc * spec.n_images))

    def __call__(self, ber: float, trial: int, seed: int, group=None) -> dict:
        s = self.spec
        rng = np.random.default_rng(seed)
        n_faults = int(rng.binomial(s.n_bits, ber))
        n_masked = int(rng.binomial(n_faults, s.mask_prob))
        eff = n_faults - n_masked
        if s.work_seconds:
            time.sleep(s.work_seconds)
        n = s.n_images
        if rng.random() < 1.0 - (1.0 - s.nan_prob) ** eff:
            return dict(correct=0, sdc=n, nonfinite=n, n_faults=n_faults,
                        n_masked=n_masked, n_images=n)
        p_hit = 1.0 - (1.0 - min(1.0, s.hit_prob * s.scale(group))) ** eff
        hit_right = int(rng.binomial(self.n_correct0, p_hit))
        hit_wrong = int(rng.binomial(n - self.n_correct0, p_hit))
        return dict(correct=self.n_correct0 - hit_right, sdc=hit_right + hit_wrong,
                    nonfinite=0, n_faults=n_faults, n_masked=n_masked, n_images=n)
