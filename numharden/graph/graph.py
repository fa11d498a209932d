"""The model graph: a DAG of named nodes, each an op with attributes and named parameters.

Shapes here are per sample and channel-first, as PyTorch reports them: ``(C, H, W)`` for
feature maps and ``(F,)`` after ``flatten``/``linear``. The executor works in NHWC; that
is an implementation detail the graph does not expose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import FormatError, MissingTensorError, ShapeError

INPUT = "input"


@dataclass
class Node:
    """One operation of the graph.

    Attributes
    ----------
    name : str
        Unique dotted name (``layer1.0.conv1``); parameter names derive from it.
    op : str
        One of :data:`OPS`.
    inputs : list of str
        Names of the nodes feeding this one (``'input'`` is the graph input).
    attrs : dict
        Op attributes, JSON-serialisable (see docs/FORMAT.md for each op).
    params : dict of str to str
        Role (``'weight'``, ``'bias'``, ...) to parameter name in ``Model.params``.
    """

    name: str
    op: str
    inputs: list[str]
    attrs: dict = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def conv_out(size: int, k: int, s: int, p0: int, p1: int, d: int) -> int:
    """Output length of a convolution along one axis (PyTorch's formula)."""
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def pool_out(size: int, k: int, s: int, p0: int, p1: int, d: int, ceil_mode: bool) -> int:
    """Output length of a pooling window along one axis, with PyTorch's ceil_mode rule
    (the last window must start inside the input or the leading padding)."""
    span = size + p0 + p1 - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + p0:
        out -= 1
    return out


def _spatial(node: Node, shape, channels: int, pooling: bool):
    _, h, w = shape
    kh, kw = _pair(node.attrs["kernel"])
    sh, sw = _pair(node.attrs.get("stride", node.attrs["kernel"]))
    pt, pb, pl, pr = node.attrs.get("padding", (0, 0, 0, 0))
    dh, dw = _pair(node.attrs.get("dilation", 1))
    ceil = bool(node.attrs.get("ceil_mode", False))
    if pooling:
        ho = pool_out(h, kh, sh, pt, pb, dh, ceil)
        wo = pool_out(w, kw, sw, pl, pr, dw, ceil)
    else:
        ho, wo = conv_out(h, kh, sh, pt, pb, dh), conv_out(w, kw, sw, pl, pr, dw)
    if ho < 1 or wo < 1:
        raise ShapeError(f"node {node.name!r} ({node.op}): input {tuple(shape)} is too small for "
                         f"kernel {(kh, kw)} with padding {(pt, pb, pl, pr)}; output would be "
                         f"{(ho, wo)}. Use a larger input or a smaller kernel/stride")
    return (channels, ho, wo)


def _need_rank(node, shape, rank):
    if len(shape) != rank:
        what = "a (C, H, W) feature map" if rank == 3 else "a flat (F,) vector"
        raise ShapeError(f"node {node.name!r} ({node.op}) needs {what}, got shape "
                         f"{tuple(shape)}; insert a flatten node or fix its inputs")


def _conv(node, shapes):
    (s,) = shapes
    _need_rank(node, s, 3)
    a = node.attrs
    g = int(a.get("groups", 1))
    if s[0] != a["in_channels"] or a["in_channels"] % g or a["out_channels"] % g:
        raise ShapeError(f"conv node {node.name!r}: in_channels={a['in_channels']}, "
                         f"out_channels={a['out_channels']}, groups={g}, but its input has "
                         f"{s[0]} channels; channels must match and be divisible by groups")
    return _spatial(node, s, a["out_channels"], pooling=False)


def _linear(node, shapes):
    (s,) = shapes
    _need_rank(node, s, 1)
    if s[0] != node.attrs["in_features"]:
        raise ShapeError(f"linear node {node.name!r}: in_features={node.attrs['in_features']} "
                         f"but its input has {s[0]} features")
    return (node.attrs["out_features"],)


def _same(node, shapes):
    return shapes[0]


def _bn(node, shapes):
    (s,) = shapes
    if s[0] != node.attrs["num_features"]:
        raise ShapeError(f"batchnorm node {node.name!r}: num_features={node.attrs['num_features']}"
                         f" but its input has {s[0]} channels")
    return s


def _pool(node, shapes):
    _need_rank(node, shapes[0], 3)
    return _spatial(node, shapes[0], shapes[0][0], pooling=True)


def _gap(node, shapes):
    _need_rank(node, shapes[0], 3)
    return (shapes[0][0], 1, 1)


def _add(node, shapes):
    if len(shapes) != 2 or tuple(shapes[0]) != tuple(shapes[1]):
        raise ShapeError(f"add node {node.name!r} needs two inputs of equal shape, got "
                         f"{[tuple(s) for s in shapes]}")
    return shapes[0]


def _concat(node, shapes):
    if len(shapes) < 2 or any(len(s) != 3 or tuple(s[1:]) != tuple(shapes[0][1:]) for s in shapes):
        raise ShapeError(f"concat node {node.name!r} needs two or more (C, H, W) inputs with "
                         f"equal H, W, got {[tuple(s) for s in shapes]}")
    return (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])


def _flatten(node, shapes):
    return (math.prod(shapes[0]),)


def _subsample_pad(node, shapes):
    (s,) = shapes
    _need_rank(node, s, 3)
    sh, sw = _pair(node.attrs["stride"])
    before, after = node.attrs["pad_channels"]
    return (s[0] + before + after, -(-s[1] // sh), -(-s[2] // sw))


# op -> (number of inputs or None for >= 2, shape rule, parameter roles and their shapes)
OPS = {
    "conv2d": (1, _conv),
    "linear": (1, _linear),
    "batchnorm": (1, _bn),
    "relu": (1, _same),
    "relu6": (1, _same),
    "hardtanh": (1, _same),
    "maxpool2d": (1, _pool),
    "avgpool2d": (1, _pool),
    "global_avgpool": (1, _gap),
    "add": (2, _add),
    "concat": (None, _concat),
    "flatten": (1, _flatten),
    "subsample_pad": (1, _subsample_pad),
    "act_quant": (1, _same),
    "log_softmax": (1, _same),
}


def param_shapes(node: Node) -> dict[str, tuple]:
    """Shape each parameter role of ``node`` must have (PyTorch layouts)."""
    a = node.attrs
    if node.op == "conv2d":
        kh, kw = _pair(a["kernel"])
        shapes = {"weight": (a["out_channels"], a["in_channels"] // a.get("groups", 1), kh, kw)}
        return shapes | ({"bias": (a["out_channels"],)} if "bias" in node.params else {})
    if node.op == "linear":
        shapes = {"weight": (a["out_features"], a["in_features"])}
        return shapes | ({"bias": (a["out_features"],)} if "bias" in node.params else {})
    if node.op == "batchnorm":
        c = (a["num_features"],)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c}
    if node.op == "act_quant":
        return {"clip": (1,)}
    return {}


def _cycle_through(nodes: dict, start: str) -> list[str]:
    """A data-flow path ``start -> ... -> start``, or [] when ``start`` is on no cycle."""
    stack, seen = [(start, [start])], set()
    while stack:
        name, path = stack.pop()
        for i in nodes[name].inputs if name in nodes else ():
            if i == start:
                return (path + [start])[::-1]  # in data-flow order
            if i in nodes and i not in seen:
                seen.add(i)
                stack.append((i, path + [i]))
    return []


class Graph:
    """Nodes in topological order with the per-sample input shape and the output node.

    Creation checks that ops are known, inputs exist and come earlier, names are unique
    and shapes agree; ``shapes`` then holds every node's output shape.
    """

    def __init__(self, nodes: list[Node], input_shape, output: str):
        self.nodes = list(nodes)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.output = output
        self.by_name: dict[str, Node] = {}
        self.shapes: dict[str, tuple] = {INPUT: self.input_shape}
        self._all = {n.name: n for n in self.nodes}
        for node in self.nodes:
            self._add(node)
        del self._all
        if output not in self.by_name:
            raise MissingTensorError(f"graph output {output!r} is not a node; nodes are "
                                     f"{list(self.by_name)[-5:]} (last five)")
        self.consumers: dict[str, list[str]] = {n: [] for n in self.shapes}
        for node in self.nodes:
            for i in node.inputs:
                self.consumers[i].append(node.name)

    def _add(self, node: Node) -> None:
        if node.op not in OPS:
            raise FormatError(f"node {node.name!r} has unknown op {node.op!r}; known ops: "
                              f"{', '.join(sorted(OPS))}")
        if node.name in self.shapes:
            raise FormatError(f"node name {node.name!r} is used twice (or is the reserved "
                              f"name {INPUT!r}); node names must be unique")
        n_in, rule = OPS[node.op]
        if (n_in is not None and len(node.inputs) != n_in) or (n_in is None and len(node.inputs) < 2):
            want = n_in if n_in is not None else "two or more"
            raise FormatError(f"node {node.name!r} ({node.op}) takes {want} input(s), "
                              f"got {node.inputs}")
        for i in node.inputs:
            if i not in self.shapes:
                raise FormatError(self._bad_input(node, i))
        expected = set(param_shapes(node))
        if not set(node.params) <= expected | {"bias"} or not {
                r for r in expected if r != "bias"} <= set(node.params):
            raise FormatError(f"node {node.name!r} ({node.op}) has parameter roles "
                              f"{sorted(node.params)}, expected {sorted(expected)}")
        self.shapes[node.name] = tuple(rule(node, [self.shapes[i] for i in node.inputs]))
        self.by_name[node.name] = node

    def _bad_input(self, node: Node, name: str) -> str:
        """Why ``node`` cannot read ``name`` yet: a cycle, a later node, or no such node."""
        if name not in self._all:
            return (f"node {node.name!r} reads {name!r}, which is not a node or 'input'; "
                    "fix the name in its inputs")
        path = _cycle_through(self._all, node.name) or _cycle_through(self._all, name)
        if path:
            return (f"the graph has a cycle: {' -> '.join(path)}; a network graph must be "
                    "acyclic (remove one of these inputs)")
        return (f"node {node.name!r} reads {name!r}, which comes later in /graph nodes; list "
                "nodes in topological order (every node after the nodes it reads)")

    def __getitem__(self, name: str) -> Node:
        try:
            return self.by_name[name]
        except KeyError:
            raise MissingTensorError(f"no node named {name!r} in the graph") from None

    @property
    def num_classes(self) -> int:
        return int(self.shapes[self.output][0])

    def to_dict(self) -> dict:
        """JSON-serialisable description (the HDF5 format stores this)."""
        return {"input_shape": list(self.input_shape), "output": self.output,
                "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs),
                           "attrs": n.attrs, "params": dict(n.params)} for n in self.nodes]}

    @classmethod
    def from_dict(cls, d: dict) -> "Graph":
        try:
            nodes = [Node(n["name"], n["op"], list(n["inputs"]), dict(n.get("attrs", {})),
                          dict(n.get("params", {}))) for n in d["nodes"]]
            return cls(nodes, d["input_shape"], d["output"])
        except (KeyError, TypeError) as e:
            raise FormatError(f"graph description is missing or has a malformed field ({e}); "
                              "see docs/FORMAT.md, section 'graph'") from None

    def check_params(self, params: dict) -> None:
        """Check every parameter a node names exists with the shape the node needs."""
        for node in self.nodes:
            want = param_shapes(node)
            for role, pname in node.params.items():
                if pname not in params:
                    raise MissingTensorError(f"node {node.name!r} needs parameter {pname!r} "
                                             f"({role}), which is missing")
                got = tuple(params[pname].shape)
                if got != tuple(want[role]):
                    raise ShapeError(f"parameter {pname!r} ({node.op} {role}) has shape {got}, "
                                     f"expected {tuple(want[role])} from the node's attributes")
