"""Optimizers over named latent parameters: SGD and Adam / AdamW with PyTorch's update rules.

An optimizer holds *parameter groups*, each a dict ``{'params': {name: Tensor}, 'lr': ...,
<option>: ...}`` as in PyTorch; options missing from a group take the optimizer's
defaults. :meth:`Optimizer.step` reads every parameter's ``.grad`` and updates its
``.data`` in place (the array object is kept, so anything holding it sees the change).
Parameters without a gradient are skipped, as PyTorch skips ``grad is None``.

The learning rate of each group is set by the training loop from a schedule
(:mod:`numharden.train.schedule`) before every step; ``group['initial_lr']`` keeps the
base value the schedule scales.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Tensor
from ..errors import ConfigError, DTypeError, ShapeError

# Parameter kinds a Trainable reports (see Trainable.kind); the default excludes
# everything but conv / linear weights from weight decay.
KINDS = ("weight", "bias", "bn", "clip")
DEFAULT_NO_DECAY = ("bias", "bn", "clip")


def _number(owner: str, key: str, value, lo: float, hi: float = math.inf,
            lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{owner}: option {key!r} must be a number, found "
                          f"{type(value).__name__} {value!r}")
    v = float(value)
    bad_lo = v <= lo if lo_open else v < lo
    if not math.isfinite(v) or bad_lo or v > hi:
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{']' if math.isfinite(hi) else ')'}"
        raise ConfigError(f"{owner}: option {key!r} must lie in {rng}, found {value!r}")
    return v


class Optimizer:
    """Base class: parameter groups, option validation, ``zero_grad`` and ``step``.

    Subclasses define ``DEFAULTS`` (option -> default), ``_check(group)`` and
    ``_update(name, p, g, group, state)``.
    """

    DEFAULTS: dict = {}
    name = "optimizer"

    def __init__(self, params, **options):
        unknown = set(options) - set(self.DEFAULTS)
        if unknown:
            raise ConfigError(f"{self.name}: unknown option(s) {sorted(unknown)}; valid "
                              f"options are {sorted(self.DEFAULTS)}")
        self.defaults = dict(self.DEFAULTS) | options
        if isinstance(params, dict):
            params = [{"params": params}]
        if not isinstance(params, (list, tuple)) or not params:
            raise ConfigError(f"{self.name}: params must be a dict name -> Tensor or a "
                              f"non-empty list of groups {{'params': {{...}}, ...}}, found "
                              f"{type(params).__name__}")
        self.param_groups: list[dict] = []
        seen: set[str] = set()
        for i, group in enumerate(params):
            self.param_groups.append(self._make_group(i, group, seen))
        self.state: dict[str, dict] = {}
        self.steps = 0

    def _make_group(self, i: int, group, seen: set) -> dict:
        where = f"{self.name} parameter group {i}"
        if not isinstance(group, dict) or "params" not in group:
            raise ConfigError(f"{where}: expected a dict with key 'params', found {group!r}")
        unknown = set(group) - set(self.DEFAULTS) - {"params", "initial_lr"}
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {sorted(unknown)}; valid options "
                              f"are {sorted(self.DEFAULTS)}")
        ps = group["params"]
        if not isinstance(ps, dict):
            raise ConfigError(f"{where}: 'params' must be a dict name -> Tensor, found "
                              f"{type(ps).__name__}")
        for name, p in ps.items():
            if not isinstance(p, Tensor):
                raise DTypeError(f"{where}: parameter {name!r} must be a Tensor, found "
                                 f"{type(p).__name__}; wrap it as Tensor(arr, requires_grad=True)")
            if p.data.dtype.kind != "f":
                raise DTypeError(f"{where}: parameter {name!r} must hold floats, found "
                                 f"{p.data.dtype}")
            if name in seen:
                raise ConfigError(f"{self.name}: parameter {name!r} appears in two groups; "
                                  "put each parameter in exactly one group")
            seen.add(name)
        g = dict(self.defaults) | group
        g["params"] = dict(ps)
        self._check(g, where)
        g.setdefault("initial_lr", g["lr"])
        return g

    def _check(self, group: dict, where: str) -> None:
        _number(where, "lr", group["lr"], 0.0)
        _number(where, "weight_decay", group["weight_decay"], 0.0)

    @property
    def lr(self) -> float:
        """Learning rate of the first group (the one progress reports show)."""
        return float(self.param_groups[0]["lr"])

    def set_lr_factor(self, factor: float) -> None:
        """Set every group's ``lr`` to ``factor * initial_lr``."""
        for group in self.param_groups:
            group["lr"] = factor * group["initial_lr"]

    def parameters(self):
        """Iterate over ``(name, Tensor)`` of every group."""
        for group in self.param_groups:
            yield from group["params"].items()

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for _, p in self.parameters():
            p.grad = None

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        self.steps += 1
        # a diverging run overflows here; the training loop reports non-finite
        # parameters itself, with the step and learning rate
        with np.errstate(over="ignore", invalid="ignore"):
            self._step_groups()

    def _step_groups(self) -> None:
        for group in self.param_groups:
            for name, p in group["params"].items():
                if p.grad is None:
                    continue
                g = np.asarray(p.grad)
                if g.shape != p.data.shape:
                    raise ShapeError(f"{self.name}: gradient of {name!r} has shape {g.shape}, "
                                     f"parameter has {p.data.shape}")
                self._update(name, p.data, g.astype(p.data.dtype, copy=False), group,
                             self.state.setdefault(name, {}))

    def _update(self, name, p, g, group, state) -> None:
        raise NotImplementedError(f"{type(self).__name__} defines no update rule")

    def describe(self) -> dict:
        """JSON-serialisable summary: the optimizer name and each group's options."""
        return {"name": self.name, "groups": [
            {k: (sorted(v) if k == "params" else v) for k, v in g.items() if k != "lr"}
            for g in self.param_groups]}


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, PyTorch's ``torch.optim.SGD`` rule.

    For each parameter p with gradient g, at step t (1-based)::

        g <- g + weight_decay * p
        b <- g                                     (t = 1)
        b <- momentum * b + (1 - dampening) * g    (t > 1)
        g <- g + momentum * b  if nesterov  else  b        (when momentum != 0)
        p <- p - lr * g

    Parameters
    ----------
    params : dict of str to Tensor, or list of dict
        Parameters, or PyTorch-style groups ``{'params': {...}, 'lr': ..., ...}``.
    lr : float
    momentum, dampening, weight_decay : float
    nesterov : bool
        Needs ``momentum > 0`` and ``dampening == 0`` (as PyTorch).
    """

    name = "sgd"
    DEFAULTS = {"lr": 0.01, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
                "weight_decay": 0.0}

    def _check(self, group, where):
        super()._check(group, where)
        _number(where, "momentum", group["momentum"], 0.0)
        _number(where, "dampening", group["dampening"], 0.0, 1.0)
        if not isinstance(group["nesterov"], bool):
            raise ConfigError(f"{where}: option 'nesterov' must be True or False, found "
                              f"{group['nesterov']!r}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ConfigError(f"{where}: Nesterov momentum needs momentum > 0 and "
                              f"dampening 0, found momentum={group['momentum']}, "
                              f"dampening={group['dampening']}")

    def _update(self, name, p, g, group, state):
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        if wd:
            g = g + p.dtype.type(wd) * p
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, dtype=p.dtype, copy=True)
            else:
                buf *= p.dtype.type(mu)
                buf += p.dtype.type(1.0 - group["dampening"]) * g
            g = g + p.dtype.type(mu) * buf if group["nesterov"] else buf
        p -= p.dtype.type(lr) * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction, PyTorch's ``torch.optim.Adam`` rule;
    ``decoupled=True`` gives AdamW (Loshchilov & Hutter 2019, ``torch.optim.AdamW``).

    For each parameter p with gradient g, at step t (1-based)::

        g <- g + weight_decay * p                  (Adam: L2 penalty in the gradient)
        p <- p * (1 - lr * weight_decay)           (AdamW: decoupled decay instead)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g**2
        p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    params : dict of str to Tensor, or list of dict
    lr : float
    betas : tuple of float
    eps : float
    weight_decay : float
    decoupled : bool
        AdamW's decoupled weight decay.
    """

    name = "adam"
    DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                "decoupled": False}

    def _check(self, group, where):
        super()._check(group, where)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError(f"{where}: option 'betas' must be a pair (beta1, beta2), "
                              f"found {betas!r}")
        group["betas"] = (_number(where, "betas[0]", betas[0], 0.0, 1.0),
                          _number(where, "betas[1]", betas[1], 0.0, 1.0))
        if max(group["betas"]) >= 1.0:
            raise ConfigError(f"{where}: betas must be < 1, found {betas!r}")
        _number(where, "eps", group["eps"], 0.0)
        if not isinstance(group["decoupled"], bool):
            raise ConfigError(f"{where}: option 'decoupled' must be True or False, found "
                              f"{group['decoupled']!r}")

    def _update(self, name, p, g, group, state):
        lr, wd = group["lr"], group["weight_decay"]
        b1, b2 = group["betas"]
        t = state["step"] = state.get("step", 0) + 1
        if wd:
            if group["decoupled"]:
                p *= p.dtype.type(1.0 - lr * wd)
            else:
                g = g + p.dtype.type(wd) * p
        m = state.setdefault("exp_avg", np.zeros_like(p))
        v = state.setdefault("exp_avg_sq", np.zeros_like(p))
        m *= p.dtype.type(b1)
        m += p.dtype.type(1.0 - b1) * g
        v *= p.dtype.type(b2)
        v += p.dtype.type(1.0 - b2) * (g * g)
        denom = np.sqrt(v) / p.dtype.type(math.sqrt(1.0 - b2 ** t)) + p.dtype.type(group["eps"])
        p -= p.dtype.type(lr / (1.0 - b1 ** t)) * (m / denom)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": Adam}


def make_optimizer(spec, params: dict, kinds: dict | None = None) -> Optimizer:
    """Build an optimizer from a spec, splitting parameters into decay / no-decay groups.

    Parameters
    ----------
    spec : str or dict
        ``'sgd'``, ``'adam'``, ``'adamw'`` or a dict ``{'name': ..., <option>: ...}``
        with the options of :class:`SGD` / :class:`Adam` plus ``no_decay``: the
        parameter kinds exempt from weight decay (subset of ``weight, bias, bn,
        clip``; default ``['bias', 'bn', 'clip']``, ``[]`` decays everything).
        ``'adamw'`` is Adam with ``decoupled=True``.
    params : dict of str to Tensor
    kinds : dict of str to str, optional
        Kind of each parameter (``Trainable.kinds``); needed when ``no_decay`` is
        not empty and weight decay is used. Parameters missing here count as
        ``'weight'``.

    Returns
    -------
    Optimizer
        With ``spec``: the complete spec (every option, defaults filled in) for the
        training recipe.
    """
    spec = {"name": spec} if isinstance(spec, str) else dict(spec or {})
    name = str(spec.pop("name", "sgd")).lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    if name == "adamw":
        spec.setdefault("decoupled", True)
        if spec["decoupled"] is not True:
            raise ConfigError("optimizer 'adamw' is Adam with decoupled=True; use 'adam' "
                              "for the L2 form")
    no_decay = spec.pop("no_decay", DEFAULT_NO_DECAY)
    if isinstance(no_decay, str) or not all(k in KINDS for k in no_decay):
        raise ConfigError(f"optimizer option 'no_decay' must be a list drawn from {KINDS}, "
                          f"found {no_decay!r}")
    kinds = kinds or {}
    exempt = {n: p for n, p in params.items() if kinds.get(n, "weight") in no_decay}
    decay = {n: p for n, p in params.items() if n not in exempt}
    groups = [{"params": decay}] if decay else []
    if exempt:
        groups.append({"params": exempt, "weight_decay": 0.0})
    opt = OPTIMIZERS[name](groups, **spec)
    opt.spec = {"name": name} | {k: (list(v) if isinstance(v, tuple) else v)
                                 for k, v in opt.defaults.items()} | {"no_decay": list(no_decay)}
    return opt
