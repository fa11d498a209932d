"""Build a :class:`Model` layer by layer with shape inference and PyTorch-like init.

>>> b = GraphBuilder((1, 28, 28), seed=0)
>>> x = b.conv2d("conv1", b.input, 6, 5, padding=2)
>>> x = b.relu("relu1", x)
>>> x = b.linear("fc", b.flatten("flat", x), 10)
>>> model = b.build(x)
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..formats import parse_format
from .graph import INPUT, Graph, Node, _pair
from .model import Model


def _padding4(padding) -> list[int]:
    if isinstance(padding, (list, tuple)):
        if len(padding) == 4:
            return [int(p) for p in padding]
        ph, pw = _pair(padding)
        return [ph, ph, pw, pw]
    return [int(padding)] * 4


class GraphBuilder:
    """Incrementally build a graph and its initial float parameters.

    Parameters
    ----------
    input_shape : tuple of int
        Per-sample input shape ``(C, H, W)``.
    seed : int
        Seed of the ``numpy.random.Generator`` used for initialisation.
    """

    input = INPUT

    def __init__(self, input_shape, seed: int = 0):
        self._nodes: list[Node] = []
        self.input_shape = tuple(int(v) for v in input_shape)
        self.shapes: dict[str, tuple] = {INPUT: self.input_shape}
        self.values: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(seed)

    # -- plumbing ----------------------------------------------------------------------
    def _node(self, name, op, inputs, attrs=None, params=None) -> str:
        node = Node(name, op, list(inputs), attrs or {}, params or {})
        # validate incrementally by building a graph of everything so far
        graph = Graph(self._nodes + [node], self.input_shape, output=name)
        self._nodes.append(node)
        self.shapes[name] = graph.shapes[name]
        return name

    def channels(self, x: str) -> int:
        """Channels (or features) of node ``x``'s output."""
        return self.shapes[x][0]

    def _uniform(self, bound, shape):
        return self.rng.uniform(-bound, bound, size=shape).astype(np.float32)

    # -- layers ------------------------------------------------------------------------
    def conv2d(self, name, x, out_channels, kernel, stride=1, padding=0, dilation=1,
               groups=1, bias=True) -> str:
        """Convolution; weights Kaiming-normal (fan_out, ReLU gain), bias zero."""
        cin = self.channels(x)
        kh, kw = _pair(kernel)
        attrs = {"in_channels": cin, "out_channels": int(out_channels), "kernel": [kh, kw],
                 "stride": list(_pair(stride)), "padding": _padding4(padding),
                 "dilation": list(_pair(dilation)), "groups": int(groups)}
        params = {"weight": f"{name}.weight"} | ({"bias": f"{name}.bias"} if bias else {})
        self._node(name, "conv2d", [x], attrs, params)
        fan_out = out_channels // groups * kh * kw
        shape = (out_channels, cin // groups, kh, kw)
        self.values[f"{name}.weight"] = (self.rng.standard_normal(shape)
                                         * math.sqrt(2.0 / fan_out)).astype(np.float32)
        if bias:
            self.values[f"{name}.bias"] = np.zeros(out_channels, np.float32)
        return name

    def linear(self, name, x, out_features, bias=True) -> str:
        """Fully connected layer with PyTorch's default uniform(±1/sqrt(fan_in)) init."""
        fin = self.channels(x)
        attrs = {"in_features": fin, "out_features": int(out_features)}
        params = {"weight": f"{name}.weight"} | ({"bias": f"{name}.bias"} if bias else {})
        self._node(name, "linear", [x], attrs, params)
        bound = 1.0 / math.sqrt(fin)
        self.values[f"{name}.weight"] = self._uniform(bound, (out_features, fin))
        if bias:
            self.values[f"{name}.bias"] = self._uniform(bound, (out_features,))
        return name

    def batchnorm(self, name, x, eps=1e-5, momentum=0.1) -> str:
        c = self.channels(x)
        roles = ("weight", "bias", "running_mean", "running_var")
        self._node(name, "batchnorm", [x], {"num_features": c, "eps": float(eps),
                                             "momentum": float(momentum)},
                   {r: f"{name}.{r}" for r in roles})
        for r, v in zip(roles, (1.0, 0.0, 0.0, 1.0)):
            self.values[f"{name}.{r}"] = np.full(c, v, np.float32)
        return name

    def relu(self, name, x) -> str:
        return self._node(name, "relu", [x])

    def relu6(self, name, x) -> str:
        return self._node(name, "relu6", [x])

    def hardtanh(self, name, x, lo=-1.0, hi=1.0) -> str:
        return self._node(name, "hardtanh", [x], {"min_val": float(lo), "max_val": float(hi)})

    def maxpool2d(self, name, x, kernel, stride=None, padding=0, dilation=1,
                  ceil_mode=False) -> str:
        return self._node(name, "maxpool2d", [x], {
            "kernel": list(_pair(kernel)), "stride": list(_pair(stride or kernel)),
            "padding": _padding4(padding), "dilation": list(_pair(dilation)),
            "ceil_mode": bool(ceil_mode)})

    def avgpool2d(self, name, x, kernel, stride=None, padding=0, ceil_mode=False,
                  count_include_pad=True) -> str:
        return self._node(name, "avgpool2d", [x], {
            "kernel": list(_pair(kernel)), "stride": list(_pair(stride or kernel)),
            "padding": _padding4(padding), "ceil_mode": bool(ceil_mode),
            "count_include_pad": bool(count_include_pad)})

    def global_avgpool(self, name, x) -> str:
        return self._node(name, "global_avgpool", [x])

    def add(self, name, a, b) -> str:
        return self._node(name, "add", [a, b])

    def concat(self, name, xs) -> str:
        return self._node(name, "concat", list(xs))

    def subsample_pad(self, name, x, stride=2, pad_channels=(0, 0)) -> str:
        """Parameter-free option-A shortcut: keep every ``stride``-th row/column, add
        ``pad_channels`` (before, after) zero channels."""
        return self._node(name, "subsample_pad", [x], {
            "stride": list(_pair(stride)), "pad_channels": [int(v) for v in pad_channels]})

    def flatten(self, name, x) -> str:
        return self._node(name, "flatten", [x])

    def log_softmax(self, name, x) -> str:
        return self._node(name, "log_softmax", [x])

    def act_quant(self, name, x, bits, clip=6.0) -> str:
        """Unsigned ``bits``-bit activation quantiser with a learnable clip value."""
        if not 1 <= int(bits) <= 16:
            raise ConfigError(f"act_quant {name!r}: bits must be in 1..16, got {bits}")
        self._node(name, "act_quant", [x], {"bits": int(bits)}, {"clip": f"{name}.clip"})
        self.values[f"{name}.clip"] = np.full(1, clip, np.float32)
        return name

    # -- result --------------------------------------------------------------------------
    def build(self, output: str, weight_format="fp32", meta: dict | None = None) -> Model:
        """Freeze the graph; conv/linear weights are encoded with ``weight_format``
        (a spec string or Format), everything else is stored as fp32."""
        graph = Graph(self._nodes, self.input_shape, output)
        wfmt = parse_format(weight_format) if isinstance(weight_format, str) else weight_format
        fp32 = parse_format("fp32")
        weights = {n.params["weight"] for n in graph.nodes if n.op in ("conv2d", "linear")}
        params = {}
        for pname, value in self.values.items():
            fmt = wfmt if pname in weights else fp32
            axis = 0 if (fmt is wfmt and getattr(fmt, "per_channel", False)) else None
            params[pname] = fmt.encode(value, axis=axis)
        return Model(graph, params, dict(meta or {}))
