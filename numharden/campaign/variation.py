"""The crossbar variation trial: one draw of cells (and optionally bit faults), one pass.

:class:`VariationSweepSpec` is the campaign spec of ``numharden sweep --variation ...``.
The campaign's levels (``CampaignConfig.bers``, named by ``CampaignConfig.quantity``)
are the swept quantity: a :class:`~numharden.crossbar.VariationSpec` field (``sigma``,
``drift_time``, ``read_noise``, ``stuck_on``, ``stuck_off``) with a fixed BER of bit
faults, or the BER with a fixed variation. One trial = bit faults on the stored codes
(if any), one crossbar draw from those codes, the test images read batch by batch (read
noise drawn anew for every batch: read ``i`` is batch ``i``), then the stored tensors are
restored and the faults undone, bit-exactly. Level 0 is the fault-free baseline by the
campaign protocol, so a sweep may contain 0 only if everything else is off there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..crossbar import CrossbarInjector, VariationSpec
from ..errors import ConfigError
from ..faults import FaultInjector
from .engine import EngineRunner, FaultSweepSpec

__all__ = ["VariationSweepSpec", "VariationRunner"]


@dataclass
class VariationSweepSpec(FaultSweepSpec):
    """A :class:`FaultSweepSpec` (model, data, fault model, targets, ``group_by='layer'``)
    plus ``variation`` (a VariationSpec dict), ``quantity`` (what the levels set) and
    ``fixed_ber`` (bit-error rate of every trial when the quantity is not 'ber')."""

    variation: dict = field(default_factory=dict)
    quantity: str = "sigma"
    fixed_ber: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.target != "weights" or self.group_by == "bit":
            raise ConfigError("variation sweeps act on weights; use --target weights and "
                              "--per-layer (not --per-bit)")
        self.variation = VariationSpec.from_dict(dict(self.variation)).to_dict()
        if self.quantity != "ber":
            self.level_spec(0.0)  # the quantity must be a spec field
        elif self.fixed_ber:
            raise ConfigError("fixed_ber applies when sweeping a crossbar quantity, not 'ber'")
        if not 0.0 <= float(self.fixed_ber) <= 1.0:
            raise ConfigError(f"--ber {self.fixed_ber!r} must lie in [0, 1]")

    def level_spec(self, level: float) -> VariationSpec:
        base = VariationSpec.from_dict(self.variation)
        if self.quantity == "ber":
            return base
        if self.quantity not in base.to_dict() or self.quantity in ("programming", "mapping"):
            raise ConfigError(f"cannot sweep {self.quantity!r}")
        return VariationSpec.from_dict({**base.to_dict(), self.quantity: level})

    def level_ber(self, level: float) -> float:
        return level if self.quantity == "ber" else float(self.fixed_ber)

    def clean_at_zero(self) -> bool:
        """True if level 0 perturbs nothing (then it may be swept: it is the baseline)."""
        return self.level_ber(0.0) == 0.0 and self.level_spec(0.0).ideal

    def build(self) -> "VariationRunner":
        return VariationRunner(self)


class VariationRunner(EngineRunner):
    """Per-worker runner of a :class:`VariationSweepSpec`."""

    def __init__(self, spec: VariationSweepSpec):
        super().__init__(spec)
        self._xbars: dict = {}

    def __call__(self, ber, trial, seed, group=None) -> dict:
        spec = self.spec
        if ber == 0.0:  # the protocol's fault-free baseline (see clean_at_zero)
            return self._result(self.clean, self.clean_nonfinite, 0, 0) | {
                "n_stuck_on": 0, "n_stuck_off": 0}
        rng = np.random.default_rng(seed)
        include, _ = self._scope(group)
        key = (group, ber)
        if key not in self._xbars:
            fb = spec.level_ber(ber)
            self._xbars[key] = (
                FaultInjector(self.model, spec.fault_model(fb, include)) if fb > 0 else None,
                CrossbarInjector(self.model, spec.level_spec(ber), include=include))
        faults, xbar = self._xbars[key]
        applied = faults.inject(rng) if faults is not None else None
        try:
            draw = xbar.draw(rng)
            preds = np.empty(len(self.labels), np.int64)
            bad_total = 0
            for i, s in enumerate(range(0, len(preds), self.bs)):
                xbar.apply(draw, read=i)
                try:
                    if self._kept is not None:
                        logits = self.model.forward(self.x[s:s + self.bs],
                                                    reuse=(self._kept[i], list(xbar.names)))
                    else:
                        logits = self.model.forward(self.x[s:s + self.bs])
                finally:
                    xbar.restore()
                bad = ~np.isfinite(logits).all(axis=1)
                p = logits.argmax(axis=1)
                p[bad] = -1
                preds[s:s + self.bs] = p
                bad_total += int(bad.sum())
        finally:
            if applied is not None:
                faults.undo(applied)
        n_f = 0 if applied is None else len(applied)
        n_m = 0 if applied is None else int(applied.masked.sum())
        return self._result(preds, bad_total, n_f + draw.n_stuck_on + draw.n_stuck_off, n_m) | {
            "n_bit_faults": n_f, "n_stuck_on": draw.n_stuck_on, "n_stuck_off": draw.n_stuck_off}
