"""Learning-rate schedules, evaluated per iteration.

A schedule maps the 0-based iteration ``t`` (optimizer steps taken so far) to a factor of
the base learning rate; the loop sets ``lr = factor(t) * base_lr`` in every parameter
group before step ``t``. Iteration counts are absolute, so the loop converts epochs to
iterations once (``steps_per_epoch``).
"""

from __future__ import annotations

import bisect
import math

from ..errors import ConfigError


class Schedule:
    """Base class: ``factor(t)`` for iteration ``t >= 0``; ``describe()`` for the recipe."""

    name = "schedule"

    def factor(self, t: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} defines no factor")

    def __call__(self, t: int) -> float:
        return self.factor(int(t))

    def describe(self) -> dict:
        return {"name": self.name} | {k: v for k, v in vars(self).items()
                                      if not k.startswith("_")}


class Constant(Schedule):
    """Factor 1 throughout."""

    name = "constant"

    def factor(self, t):
        return 1.0


class Step(Schedule):
    """Multiply by ``gamma`` at each milestone (PyTorch ``MultiStepLR``):
    ``factor(t) = gamma ** #{m in milestones : m <= t}``.

    Parameters
    ----------
    milestones : list of int
        Iterations, increasing.
    gamma : float
    """

    name = "step"

    def __init__(self, milestones, gamma: float = 0.1):
        ms = [int(m) for m in milestones]
        if any(m < 0 for m in ms) or ms != sorted(ms):
            raise ConfigError(f"step schedule: milestones must be increasing iterations >= 0, "
                              f"found {list(milestones)}")
        if not 0.0 < float(gamma) <= 1.0 or isinstance(gamma, bool):
            raise ConfigError(f"step schedule: gamma must lie in (0, 1], found {gamma!r}")
        self.milestones, self.gamma = ms, float(gamma)

    def factor(self, t):
        return self.gamma ** bisect.bisect_right(self.milestones, t)


class Cosine(Schedule):
    """Cosine annealing from the base rate to ``eta_min`` over ``total`` iterations
    (PyTorch ``CosineAnnealingLR`` closed form with ``T_max = total``), per iteration::

        lr(t) = eta_min + (base - eta_min) * (1 + cos(pi * t / total)) / 2

    The factor is ``lr(t) / base``; ``eta_min`` is the fraction ``eta_min_factor`` of the
    base rate so one schedule serves groups with different base rates. After ``total``
    iterations the factor stays at ``eta_min_factor``.

    Parameters
    ----------
    total : int
        Iterations of the annealing (>= 1).
    eta_min_factor : float
        Final rate as a fraction of the base rate, in [0, 1].
    """

    name = "cosine"

    def __init__(self, total: int, eta_min_factor: float = 0.0):
        if int(total) < 1:
            raise ConfigError(f"cosine schedule: total iterations must be >= 1, found {total}")
        if not 0.0 <= float(eta_min_factor) <= 1.0:
            raise ConfigError(f"cosine schedule: eta_min_factor must lie in [0, 1], found "
                              f"{eta_min_factor!r}")
        self.total, self.eta_min_factor = int(total), float(eta_min_factor)

    def factor(self, t):
        t = min(t, self.total)
        e = self.eta_min_factor
        return e + (1.0 - e) * (1.0 + math.cos(math.pi * t / self.total)) / 2.0


class Warmup(Schedule):
    """Linear warm-up for ``steps`` iterations, then ``after`` shifted by ``steps``::

        factor(t) = (t + 1) / steps * after(0)    for t < steps
        factor(t) = after(t - steps)              otherwise

    so the first step uses ``1/steps`` of the rate and the ramp ends exactly where the
    following schedule starts.
    """

    name = "warmup"

    def __init__(self, steps: int, after: Schedule):
        if int(steps) < 1:
            raise ConfigError(f"warm-up: steps must be >= 1, found {steps}")
        self.steps, self.after = int(steps), after

    def factor(self, t):
        if t < self.steps:
            return (t + 1) / self.steps * self.after(0)
        return self.after(t - self.steps)

    def describe(self):
        return {"name": self.name, "steps": self.steps, "after": self.after.describe()}


SCHEDULES = ("constant", "step", "cosine")
_KEYS = {"constant": set(), "step": {"milestones", "gamma"}, "cosine": {"eta_min_factor"}}


def make_schedule(spec, *, epochs: int, steps_per_epoch: int) -> Schedule:
    """Build a schedule from a spec whose times are given in epochs.

    Parameters
    ----------
    spec : str or dict or Schedule
        ``'constant'``, ``'cosine'``, ``'step'`` or a dict ``{'name': ...,
        'warmup_epochs': w, ...}``: ``step`` takes ``milestones`` (epochs, default
        the 50 % and 75 % points) and ``gamma`` (0.1); ``cosine`` takes
        ``eta_min_factor`` (0.0) and anneals over the iterations left after
        warm-up. ``warmup_epochs`` (default 0, may be fractional) adds a linear warm-up.
        A Schedule is returned unchanged.
    epochs, steps_per_epoch : int

    Returns
    -------
    Schedule
    """
    if isinstance(spec, Schedule):
        return spec
    spec = {"name": spec} if isinstance(spec, str) else dict(spec or {"name": "constant"})
    name = str(spec.pop("name", "constant")).lower()
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {list(SCHEDULES)}")
    warm_epochs = spec.pop("warmup_epochs", 0)
    unknown = set(spec) - _KEYS[name]
    if unknown:
        raise ConfigError(f"schedule {name!r}: unknown option(s) {sorted(unknown)}; valid "
                          f"options are {sorted(_KEYS[name] | {'warmup_epochs'})}")
    total = epochs * steps_per_epoch
    if isinstance(warm_epochs, bool) or not 0 <= float(warm_epochs) < max(epochs, 1):
        raise ConfigError(f"schedule: warmup_epochs must lie in [0, epochs={epochs}), found "
                          f"{warm_epochs!r}")
    warm = int(round(float(warm_epochs) * steps_per_epoch))
    if name == "constant":
        sched: Schedule = Constant()
    elif name == "step":
        ms = spec.get("milestones", [epochs // 2, (3 * epochs) // 4])
        if isinstance(ms, (str, int)) or any(isinstance(m, bool) for m in ms):
            raise ConfigError(f"step schedule: milestones must be a list of epochs, found {ms!r}")
        sched = Step([max(0, round(float(m) * steps_per_epoch) - warm) for m in ms],
                     spec.get("gamma", 0.1))
    else:
        sched = Cosine(max(total - warm, 1), spec.get("eta_min_factor", 0.0))
    return Warmup(warm, sched) if warm else sched
