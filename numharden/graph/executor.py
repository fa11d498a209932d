"""Run a :class:`Graph` node by node: the single forward path of numharden.

Inference, training, fault campaigns and analysis all execute graphs through
:func:`run`; they differ only in the *parameter provider* (decoded stored tensors with
batch norm folded, or fake-quantised latent Tensors during training) and in the
callbacks they pass. Activations are NHWC inside.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..autograd import functional as F
from ..autograd.tensor import data_of
from ..formats import parse_format
from .graph import INPUT, Graph, Node

# A fault hook sees each node's stored-form output and may change it in place:
# hook(node, out, fmt) with out the uint codes of an act_quant node (fmt 'uint<bits>')
# or the float32 activation of any other node (fmt 'fp32').
Hook = Callable[[Node, np.ndarray, object], None]
# An observer sees every node's output (Tensor or array), e.g. to measure sparsity or
# add an activation penalty; it must not modify it.
Observer = Callable[[Node, object], None]


def _act_format(bits: int):
    return parse_format(f"uint{bits}")


def run(graph: Graph, x, params: Callable[[Node], dict], *, train: bool = False,
        folded: frozenset = frozenset(), bn_stats: Callable | None = None,
        hook: Hook | None = None, observe: Observer | None = None):
    """Execute ``graph`` on the NHWC batch ``x``.

    Parameters
    ----------
    graph : Graph
    x : ndarray or Tensor, shape (N, H, W, C)
        Normalised input batch.
    params : callable
        ``params(node) -> dict``: what each node needs, in executor layouts --
        conv2d ``weight`` HWIO (KH, KW, Ci/g, Co) and optional ``bias``; linear
        ``weight`` (O, F) and ``bias``; batchnorm ``a``, ``c`` (inference affine) or
        ``weight``, ``bias`` (training); act_quant ``clip``.
    train : bool
        Batch norm uses batch statistics and reports them through ``bn_stats``.
    folded : frozenset of str
        Batch-norm nodes already folded into their convolution (pass-through).
    bn_stats : callable, optional
        ``bn_stats(node, mean, var_biased, count)`` in training mode.
    hook : callable, optional
        Fault hook, see :data:`Hook`. Only valid without gradients.
    observe : callable, optional
        Called with every node's output.

    Returns
    -------
    ndarray or Tensor, the output node's value (N, K) for classifiers.
    """
    env = {INPUT: x}
    remaining = {name: len(users) for name, users in graph.consumers.items()}
    for node in graph.nodes:
        ins = [env[i] for i in node.inputs]
        out = _step(node, ins, params, train, node.name in folded, bn_stats, hook)
        if hook is not None and node.op != "act_quant" and node.name not in folded:
            arr = data_of(out)
            if arr.dtype == np.float32 and node.op not in ("flatten",):
                hook(node, arr, _FP32)
        if observe is not None:
            observe(node, out)
        env[node.name] = out
        for i in node.inputs:  # free activations as soon as their last reader ran
            remaining[i] -= 1
            if remaining[i] == 0 and i != graph.output:
                del env[i]
    return env[graph.output]


_FP32 = parse_format("fp32")


def _step(node: Node, ins, params, train, is_folded, bn_stats, hook):
    op, a = node.op, node.attrs
    x = ins[0]
    if op == "conv2d":
        p = params(node)
        return F.conv2d(x, p["weight"], p.get("bias"), tuple(a["stride"]), tuple(a["padding"]),
                        tuple(a["dilation"]), a["groups"])
    if op == "linear":
        p = params(node)
        return F.linear(x, p["weight"], p.get("bias"))
    if op == "batchnorm":
        if is_folded:
            return x
        p = params(node)
        if train:
            y, mean, var = F.batchnorm_train(x, p["weight"], p["bias"], a["eps"])
            if bn_stats is not None:
                xd = data_of(x)
                bn_stats(node, mean, var, xd.size // xd.shape[-1])
            return y
        return F.channel_affine(x, p["a"], p["c"])
    if op == "relu":
        return F.relu(x)
    if op == "relu6":
        return F.relu6(x)
    if op == "hardtanh":
        return F.hardtanh(x, a["min_val"], a["max_val"])
    if op == "maxpool2d":
        return F.maxpool2d(x, tuple(a["kernel"]), tuple(a["stride"]), tuple(a["padding"]),
                           tuple(a.get("dilation", (1, 1))), a.get("ceil_mode", False))
    if op == "avgpool2d":
        return F.avgpool2d(x, tuple(a["kernel"]), tuple(a["stride"]), tuple(a["padding"]),
                           a.get("ceil_mode", False), a.get("count_include_pad", True))
    if op == "global_avgpool":
        return F.global_avgpool(x)
    if op == "add":
        return F.add(x, ins[1])
    if op == "concat":
        return F.concat(ins, axis=-1)
    if op == "flatten":
        return F.flatten(x) if data_of(x).ndim == 4 else x
    if op == "log_softmax":
        return F.log_softmax(x)
    if op == "act_quant":
        clip = params(node)["clip"]
        if hook is None:
            return F.act_quant(x, a["bits"], clip)
        from .. import ops
        xd = data_of(x)
        c = float(np.asarray(data_of(clip)).reshape(-1)[0])
        _, codes = ops.act_quant(xd, a["bits"], c)
        hook(node, codes, _act_format(a["bits"]))
        return ops.act_quant_from_codes(codes, a["bits"], c, xd.dtype)
    raise NotImplementedError(f"executor has no rule for op {op!r} (node {node.name!r})")
