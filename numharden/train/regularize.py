"""Activation-sparsity regularisation (Georgiadis 2019) and the sparsity meter of training.

:class:`ActivationL1` adds ``sum_l lambda_l / N * ||a_l||_1`` to the training loss, where
``a_l`` is the output of the ReLU (or ReLU6) node ``l`` on a batch of ``N`` images. The
terms are collected through the executor's ``observe`` callback during the ordinary
forward pass (house rule 1: no second forward), so the penalty's gradient flows back
through the same graph as the cross-entropy.

Which tensor is "the post-ReLU activation" in a network with activation quantisers
(``relu -> act_quant``)? The penalty reads the **ReLU output, before the quantiser**:

* it is the activation Georgiadis regularises, and it is real-valued, so the penalty is
  differentiable (its gradient ``lambda / N`` on every positive element is exact; a
  penalty on the quantiser output would reach the pre-activations only through the
  straight-through estimator);
* the quantiser's output depends on its learnable clip; penalising it would also push
  every clip down (PACT's clip gradient collects the penalty of saturated values), i.e.
  trade activation resolution for a smaller L1 norm instead of creating zeros.

Sparsity is *reported* on what the next layer reads (the quantiser output where there is
one, :func:`numharden.analysis.evaluate.activation_nodes`), exactly as ``numharden eval``
counts it; values the quantiser rounds to 0 count as zeros there.
"""

from __future__ import annotations

import math

import numpy as np

from ..analysis.evaluate import activation_nodes
from ..autograd import functional as F
from ..autograd.tensor import data_of
from ..errors import ConfigError

PENALISED_OPS = ("relu", "relu6")


def _lambda(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{where} must be a number >= 0, found {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{where} must be a finite number >= 0, found {value!r}; "
                          "give e.g. 1e-5, or 0 for no penalty")
    return v


class ActivationL1:
    """The activation-L1 penalty ``sum_l lambda_l / N * ||a_l||_1`` on ReLU outputs.

    Parameters
    ----------
    lam : float >= 0
        Coefficient of every ReLU / ReLU6 node not named in ``per_layer``.
    per_layer : dict of str to float, optional
        Coefficients of individual nodes (node names of the graph, e.g. ``'relu1'``);
        they override ``lam``.

    Notes
    -----
    ``N`` is the number of images in the batch, so ``lambda`` weighs the L1 norm of one
    image's activations. Nodes are checked against the graph when the penalty is first
    used (:meth:`bind`).
    """

    def __init__(self, lam: float = 0.0, per_layer: dict | None = None):
        self.lam = _lambda(lam, "act_l1 lambda")
        if per_layer is not None and not isinstance(per_layer, dict):
            raise ConfigError(f"act_l1 per_layer must be a dict node -> lambda, found "
                              f"{type(per_layer).__name__}")
        self.per_layer = {str(k): _lambda(v, f"act_l1 lambda of {k!r}")
                          for k, v in (per_layer or {}).items()}
        self._bound: tuple | None = None

    def bind(self, graph) -> dict[str, float]:
        """Coefficient of every penalised node of ``graph`` (zeros left out); raises
        ConfigError for a ``per_layer`` name that is no ReLU / ReLU6 node."""
        if self._bound is not None and self._bound[0] is graph:
            return self._bound[1]
        relus = [n.name for n in graph.nodes if n.op in PENALISED_OPS]
        unknown = sorted(set(self.per_layer) - set(relus))
        if unknown:
            raise ConfigError(f"act_l1: {unknown} are not ReLU / ReLU6 nodes of this model; "
                              f"per-layer coefficients apply to {relus}")
        coeffs = {n: self.per_layer.get(n, self.lam) for n in relus}
        coeffs = {n: c for n, c in coeffs.items() if c > 0}
        self._bound = (graph, coeffs)
        return coeffs

    def collector(self, graph, n: int) -> "_Collector":
        """A fresh executor observer gathering the penalty terms of one batch of ``n``."""
        return _Collector(self.bind(graph), n)

    def describe(self) -> dict:
        return {"lambda": self.lam, "per_layer": dict(self.per_layer),
                "on": "relu outputs (before activation quantisers)", "normalised_by": "batch"}


class _Collector:
    """Observer: one ``lambda / N * sum|a|`` term per penalised node output."""

    def __init__(self, coeffs: dict, n: int):
        self.coeffs, self.n, self.terms = coeffs, n, []

    def __call__(self, node, out) -> None:
        c = self.coeffs.get(node.name)
        if c:
            self.terms.append(F.scale(F.abs_sum(out), c / self.n))

    def total(self):
        """Sum of the terms (a 0-d Tensor in grad mode), or None without terms."""
        total = None
        for t in self.terms:
            total = t if total is None else F.add(total, t)
        return total


def parse_act_l1(spec) -> ActivationL1 | None:
    """An :class:`ActivationL1` from a number, ``'1e-5'``, ``'relu1=1e-5,relu2=2e-5'``,
    ``'1e-5,relu4=0'`` (default plus overrides), a dict ``{'lambda': ..., 'per_layer':
    {...}}``, an ActivationL1, or None / 0 (no penalty: returns None)."""
    if spec is None or isinstance(spec, ActivationL1):
        return spec
    if isinstance(spec, dict):
        unknown = set(spec) - {"lambda", "per_layer"}
        if unknown:
            raise ConfigError(f"act_l1: unknown key(s) {sorted(unknown)}; use 'lambda' and "
                              "'per_layer'")
        pen = ActivationL1(spec.get("lambda", 0.0), spec.get("per_layer"))
    elif isinstance(spec, str):
        lam, per = 0.0, {}
        for part in (p.strip() for p in spec.split(",")):
            key, eq, val = part.partition("=")
            try:
                v = float(val if eq else key)
            except ValueError:
                raise ConfigError(f"--act-l1 {spec!r}: {part!r} is not a number or NODE=NUMBER; "
                                  "give e.g. 1e-5 or relu1=1e-5,relu2=2e-5") from None
            if eq:
                per[key.strip()] = v
            else:
                lam = v
        pen = ActivationL1(lam, per)
    else:
        pen = ActivationL1(spec)
    return pen if (pen.lam > 0 or any(pen.per_layer.values())) else None


class SparsityMeter:
    """Observer counting exact zeros over :func:`activation_nodes` of a graph."""

    def __init__(self, graph):
        self.nodes = frozenset(activation_nodes(graph))
        self.zeros = 0
        self.total = 0

    def __call__(self, node, out) -> None:
        if node.name in self.nodes:
            arr = data_of(out)
            self.zeros += int(arr.size - np.count_nonzero(arr))
            self.total += int(arr.size)

    @property
    def sparsity(self) -> float | None:
        """Zeros over elements seen, or None for a graph without activations."""
        return self.zeros / self.total if self.total else None


def observers(*fns):
    """One observer calling every non-None observer in ``fns`` in order."""
    fns = [f for f in fns if f is not None]
    if not fns:
        return None
    if len(fns) == 1:
        return fns[0]

    def call(node, out):
        for f in fns:
            f(node, out)
    return call
