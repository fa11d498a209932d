"""Accuracy, loss, per-class accuracy and activation sparsity of a model on a dataset."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import config, ops
from ..autograd.tensor import data_of

SPARSE_OPS = ("relu", "relu6", "act_quant")


def activation_nodes(graph) -> list[str]:
    """Nodes whose outputs are the activations the next layers read: every ReLU / ReLU6
    output, replaced by the activation quantiser(s) reading it when there are any (a
    quantised network stores and passes on the quantiser's codes, so values the
    quantiser rounds to 0 count as zeros too).

    Parameters
    ----------
    graph : Graph

    Returns
    -------
    list of str, in execution order
    """
    by_name = {n.name: n for n in graph.nodes}
    out = []
    for node in graph.nodes:
        if node.op not in ("relu", "relu6"):
            continue
        quant = [c for c in graph.consumers.get(node.name, ()) if by_name[c].op == "act_quant"]
        out += quant or [node.name]
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    return sorted(dict.fromkeys(out), key=order.__getitem__)


def overall_sparsity(per_node: dict, nodes) -> float | None:
    """Fraction of zeros over all elements of ``nodes`` (weighted by element count) from
    a :meth:`sparsity_observer.result`-style dict; None if none of them was seen."""
    seen = [per_node[n] for n in nodes if n in per_node]
    total = sum(s["elements"] for s in seen)
    if not total:
        return None
    return sum(s["sparsity"] * s["elements"] for s in seen) / total


class sparsity_observer:
    """Executor observer counting exact zeros in the output of activation nodes.

    ``zeros[name] / total[name]`` is the fraction of zero activations of node ``name``
    (ReLU, ReLU6 and activation quantisers) over everything it has seen.
    """

    def __init__(self, ops_: tuple = SPARSE_OPS):
        self.ops = ops_
        self.zeros: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self.kind: dict[str, str] = {}

    def __call__(self, node, out) -> None:
        if node.op not in self.ops:
            return
        arr = data_of(out)
        self.zeros[node.name] = self.zeros.get(node.name, 0) + int(arr.size - np.count_nonzero(arr))
        self.total[node.name] = self.total.get(node.name, 0) + int(arr.size)
        self.kind[node.name] = node.op

    def result(self) -> dict[str, dict]:
        return {n: {"op": self.kind[n], "sparsity": self.zeros[n] / self.total[n],
                    "elements": self.total[n]} for n in self.zeros}


def evaluate(model, dataset, *, batch_size: int | None = None, hook=None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Evaluate ``model`` on ``dataset``.

    Parameters
    ----------
    model : Model
    dataset : Dataset
        ``images`` (N, C, H, W) raw, ``labels`` (N,) int.
    batch_size : int, optional
        Defaults to ``config.get('batch_size')``.
    hook : callable, optional
        Activation-fault hook passed to :meth:`Model.forward`.
    progress : callable, optional
        ``progress(done, total)`` after every batch.

    Returns
    -------
    dict
        ``accuracy``, ``loss`` (mean cross-entropy), ``correct``, ``n``,
        ``per_class`` (list of {class, name, accuracy, n}), ``sparsity``
        ({node: {op, sparsity, elements}}), ``activation_sparsity`` (zeros over all
        elements of :func:`activation_nodes`: the network's activation sparsity as one
        number), ``nonfinite`` (images whose logits hold
        NaN/Inf) and ``predictions`` (ndarray of int, not JSON-serialised by the CLI).
    """
    n, k = len(dataset.labels), model.num_classes
    dataset.check_for_model(model.num_classes, model.graph.input_shape)
    bs = int(batch_size or config.get("batch_size"))
    observer = sparsity_observer()
    preds = np.empty(n, np.int64)
    loss_sum, nonfinite = 0.0, 0
    for start in range(0, n, bs):
        images = dataset.images[start:start + bs]
        labels = dataset.labels[start:start + bs]
        logits = model.forward(model.normalize(images), hook=hook, observe=observer)
        finite = np.isfinite(logits).all(axis=1)
        nonfinite += int((~finite).sum())
        preds[start:start + len(labels)] = logits.argmax(axis=1)
        if finite.any():
            loss, _ = ops.cross_entropy(logits[finite].astype(np.float64), labels[finite])
            loss_sum += float(loss) * int(finite.sum())
        if progress is not None:
            progress(min(start + bs, n), n)
    correct = preds == dataset.labels
    names = list(getattr(dataset, "class_names", None) or model.meta.get("class_names") or [])
    per_class = []
    for c in range(k):
        mask = dataset.labels == c
        per_class.append({"class": c, "name": names[c] if c < len(names) else str(c),
                          "n": int(mask.sum()),
                          "accuracy": float(correct[mask].mean()) if mask.any() else None})
    return {"accuracy": float(correct.mean()) if n else float("nan"),
            "loss": loss_sum / max(n - nonfinite, 1), "correct": int(correct.sum()), "n": n,
            "nonfinite": nonfinite, "per_class": per_class, "sparsity": observer.result(),
            "activation_sparsity": overall_sparsity(observer.result(),
                                                    activation_nodes(model.graph)),
            "predictions": preds}
