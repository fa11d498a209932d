"""Run a :class:`Graph` node by node: the single forward path of numharden.

Inference, training, fault campaigns and analysis all execute graphs through
:func:`run`; they differ only in the *parameter provider* (decoded stored tensors with
batch norm folded, or fake-quantised latent Tensors during training) and in the
callbacks they pass. Activations are NHWC inside.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import ops
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
        hook: Hook | None = None, observe: Observer | None = None, fuse: bool = False,
        reuse: tuple | None = None):
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
        Called with every computed node's output.
    fuse : bool
        Inference with plain ndarray parameters only (no gradients): run a convolution
        followed by its (folded) batch norm, residual add and ReLU / ReLU6 / hardtanh
        as one kernel call, skip a ReLU whose only reader is an activation quantiser
        (which clamps at 0 itself) and pool without argmax. Same values as unfused.
        Ignored when ``hook``, ``observe`` or ``train`` is given: they see every node.
    reuse : (outputs, dirty), optional
        Recompute only what changed: ``outputs`` maps node names to their values on
        this very ``x`` before some parameters changed (e.g. recorded by ``observe`` on
        a clean forward), ``dirty`` names the nodes whose parameters changed since.
        Nodes downstream of no dirty node are read from ``outputs`` where available,
        so a fault in the last layer costs only the last layer. Not with ``hook``.

    Returns
    -------
    ndarray or Tensor, the output node's value (N, K) for classifiers.
    """
    if reuse is not None and hook is not None:
        raise ValueError("run(): reuse= cannot be combined with an activation hook (the "
                         "hook must see every node); pass one or the other")
    fuse = fuse and not train and hook is None and observe is None
    outputs, dirty = reuse if reuse is not None else ({}, None)
    plan = _plan(graph, folded, fuse, None if dirty is None else frozenset(dirty),
                 None if dirty is None else frozenset(outputs))
    env = {INPUT: x}
    for name in plan.leaves:
        env[name] = outputs[name]
    for node, kind, extra, frees in plan.steps:
        if kind == "alias":
            out = env[extra]
        elif kind == "fused":
            act, residual = extra
            p = params(node)
            a = node.attrs
            out = ops.conv2d(env[node.inputs[0]], p["weight"], p.get("bias"),
                             tuple(a["stride"]), tuple(a["padding"]), tuple(a["dilation"]),
                             a["groups"], act=act,
                             residual=None if residual is None else env[residual])
        else:
            ins = [env[i] for i in node.inputs]
            out = _step(node, ins, params, train, node.name in folded, bn_stats, hook)
            if hook is not None and node.op != "act_quant" and node.name not in folded:
                arr = data_of(out)
                if arr.dtype == np.float32 and node.op not in ("flatten",):
                    hook(node, arr, _FP32)
            if observe is not None:
                observe(node, out)
        env[node.name] = out
        for name in frees:  # free activations as soon as their last reader ran
            del env[name]
    return env[graph.output]


def reads_input(graph: Graph, folded: frozenset, dirty, cached) -> bool:
    """Whether a ``reuse`` run (see :func:`run`) with these dirty and recorded nodes
    reads the graph input at all (callers may then skip preparing it)."""
    plan = _plan(graph, folded, True, frozenset(dirty), frozenset(cached))
    return plan.reads_input


class _Plan:
    """Execution schedule: ``steps`` of (node, kind, extra, names to free after it) with
    kind 'op' (run the node), 'fused' (conv with extra = (act, residual name)) or
    'alias' (extra = the name whose value the node takes); ``leaves`` are read from
    the reuse outputs."""

    def __init__(self, steps, leaves):
        self.steps, self.leaves = steps, leaves
        self.reads_input = any(
            INPUT in ([extra] if kind == "alias" else node.inputs)
            for node, kind, extra, _ in steps)


_PLANS: dict = {}  # (id(graph), options) -> (graph, plan); graphs are never mutated
_ACTS = {"relu": lambda a: "relu", "relu6": lambda a: "relu6",
         "hardtanh": lambda a: (a["min_val"], a["max_val"])}


def _plan(graph: Graph, folded, fuse: bool, dirty, cached) -> _Plan:
    key = (id(graph), folded, fuse, dirty, cached)
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is graph:
        return hit[1]
    names = [n.name for n in graph.nodes]
    if dirty is None:
        run_names, leaves = set(names), []
    else:
        tainted = set(dirty)
        for node in graph.nodes:
            if any(i in tainted for i in node.inputs):
                tainted.add(node.name)
        run_names, leaves, stack = set(), set(), [graph.output]
        while stack:
            name = stack.pop()
            if name == INPUT or name in run_names or name in leaves:
                continue
            if name in cached and name not in tainted:
                leaves.add(name)
                continue
            run_names.add(name)
            stack.extend(graph[name].inputs)
        leaves = sorted(leaves)
    order = {INPUT: -1, **{name: -1 for name in leaves}}
    order.update({name: i for i, name in enumerate(names) if name in run_names})
    kinds = {name: ("op", None) for name in run_names}
    if fuse:
        _fuse(graph, folded, order, kinds)
    steps, reads = [], []
    for node in graph.nodes:
        if node.name not in run_names:
            continue
        kind, extra = kinds[node.name]
        if kind == "alias":
            read = [extra]
        elif kind == "fused":
            read = [node.inputs[0]] + ([extra[1]] if extra[1] is not None else [])
        else:
            read = list(node.inputs)
        steps.append([node, kind, extra, []])
        reads.append(read)
    last = {}
    for i, read in enumerate(reads):
        for name in read:
            last[name] = i
    for name, i in last.items():
        if name != graph.output:
            steps[i][3].append(name)
    plan = _Plan([tuple(s) for s in steps], leaves)
    if len(_PLANS) > 256:
        _PLANS.clear()
    _PLANS[key] = (graph, plan)
    return plan


def _fuse(graph: Graph, folded, order: dict, kinds: dict) -> None:
    """Mark conv -> [folded bn] -> [add] -> [relu|relu6|hardtanh] chains (every link the
    sole reader of the previous one, all scheduled) as one fused conv plus aliases, and
    ReLUs read only by an activation quantiser as aliases of their input."""
    def sole(name):
        users = graph.consumers[name]
        if len(users) == 1 and name != graph.output and users[0] in kinds \
                and kinds[users[0]][0] == "op":
            return graph[users[0]]
        return None

    for node in graph.nodes:
        if node.op != "conv2d" or kinds.get(node.name, ("",))[0] != "op":
            continue
        chain, act, residual, cur = [], None, None, node
        nxt = sole(cur.name)
        if nxt is not None and nxt.op == "batchnorm" and nxt.name in folded:
            chain.append(nxt)
            cur, nxt = nxt, sole(nxt.name)
        if nxt is not None and nxt.op == "add" and len(nxt.inputs) == 2:
            other = [i for i in nxt.inputs if i != cur.name]
            if len(other) == 1 and order.get(other[0], len(order)) < order[node.name]:
                residual = other[0]
                chain.append(nxt)
                cur, nxt = nxt, sole(nxt.name)
        if nxt is not None and nxt.op in _ACTS:
            act = _ACTS[nxt.op](nxt.attrs)
            chain.append(nxt)
        if act is None and residual is None:
            continue
        kinds[node.name] = ("fused", (act, residual))
        prev = node.name
        for link in chain:
            kinds[link.name] = ("alias", prev)
            prev = link.name
    for node in graph.nodes:
        if node.op == "relu" and kinds.get(node.name, ("",))[0] == "op":
            user = sole(node.name)
            if user is not None and user.op == "act_quant":
                kinds[node.name] = ("alias", node.inputs[0])


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
    if op == "subsample_pad":
        return F.subsample_pad(x, tuple(a["stride"]), tuple(a["pad_channels"]))
    if op == "log_softmax":
        return F.log_softmax(x)
    if op == "act_quant":
        clip = params(node)["clip"]
        if hook is None:
            return F.act_quant(x, a["bits"], clip)
        xd = data_of(x)
        c = float(np.asarray(data_of(clip)).reshape(-1)[0])
        _, codes = ops.act_quant(xd, a["bits"], c)
        hook(node, codes, _act_format(a["bits"]))
        return ops.act_quant_from_codes(codes, a["bits"], c, xd.dtype)
    raise NotImplementedError(f"executor has no rule for op {op!r} (node {node.name!r})")
