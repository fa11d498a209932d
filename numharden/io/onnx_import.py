"""ONNX -> numharden Model (docs/ONNX.md). Needs the optional ``onnx`` package only to
read the protobuf; nothing of ONNX Runtime runs here.

Float initializers become fp32 StoredTensors; a weight read through DequantizeLinear
(int8/uint8 codes in the file, or QuantizeLinear of a float initializer) keeps its codes:
uint8 with zero points -> ``uint8`` (``/ch``), int8 with zero point 0 -> ``int8``
(``/ch``), int8 with other zero points -> ``uint8`` codes offset by 128 (same values).
Activation QuantizeLinear/DequantizeLinear pairs on non-negative tensors become
``act_quant`` nodes; the ``Clip(0, c) / s -> Round -> * s`` pattern numharden's export
writes does too.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FormatError, NumhardenError, ShapeError
from ..formats import StoredTensor, parse_format
from ..graph import Graph, Model
from ..graph.graph import INPUT, OPS, Node
from .onnx_fold import FOLD, QConst, fold, qrange

ACT_OPS = {"Conv", "Gemm", "MatMul", "Add", "BatchNormalization", "Relu", "Clip", "MaxPool",
           "AveragePool", "GlobalAveragePool", "Concat", "Flatten", "Reshape", "Squeeze",
           "Identity", "Dropout", "LogSoftmax", "QuantizeLinear", "DequantizeLinear", "Div",
           "Round", "Mul", "Slice", "Pad"}
META_KEY, FORMATS_KEY = "numharden:meta", "numharden:formats"


def require_onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ConfigError("reading or writing ONNX files needs the 'onnx' package; install "
                          "it with pip install 'numharden[onnx]'") from e
    return onnx


def _attr(node, name, default=None):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _f32(v: float) -> float:
    """The shortest decimal of a float32 attribute (1e-5 stays 1e-5, not 9.99999974e-06)."""
    return float(str(np.float32(v)))


def _clean(name: str) -> str:
    name = re.sub(r"[^0-9A-Za-z_.\-]+", ".", name).strip(".")
    return name


class _Importer:
    def __init__(self, proto, path: str, input_shape):
        self.proto, self.path = proto, path
        g = proto.graph
        from onnx import numpy_helper
        self.consts: dict = {}
        for t in g.initializer:
            try:
                self.consts[t.name] = numpy_helper.to_array(t)
            except Exception as e:
                raise FormatError(f"{path}: initializer {t.name!r} cannot be read ({e}); the "
                                  "file is truncated or corrupt, re-export it") from None
        self.qconsts: dict[str, QConst] = {}
        self.alias: dict[str, str] = {}     # ONNX tensor -> numharden node (or INPUT)
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.shapes: dict[str, tuple] = {INPUT: ()}
        self.values: dict[str, tuple] = {}  # param name -> float array or QConst
        self.used = Counter()
        self.readers = defaultdict(list)
        for node in g.node:
            for i in node.input:
                self.readers[i].append(node)
        self.skip: set[int] = set()
        self.index = {id(n): i for i, n in enumerate(g.node)}
        self.input_name, self.input_shape = self._graph_input(input_shape)
        self.alias[self.input_name] = INPUT
        self.shapes[INPUT] = self.input_shape

    # -- checks ------------------------------------------------------------------------
    def _graph_input(self, given):
        g = self.proto.graph
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise FormatError(f"{self.path}: expected exactly one graph input (the image "
                              f"batch), found {[i.name for i in inputs]}; export the model "
                              "with a single NCHW input")
        inp = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in inp.type.tensor_type.shape.dim]
        if given is not None:
            shape = tuple(int(v) for v in given)
            if len(dims) == 4 and all(dims[1:]) and tuple(dims[1:]) != shape:
                raise ShapeError(f"{self.path}: input {inp.name!r} has shape (N, "
                                 f"{', '.join(map(str, dims[1:]))}) but input_shape {shape} "
                                 "was given; drop the option or fix it")
            return inp.name, shape
        if len(dims) != 4 or not all(dims[1:]):
            raise ShapeError(f"{self.path}: input {inp.name!r} has shape {dims}; expected "
                             "(N, C, H, W) with static C, H, W. Give the shape with "
                             "input_shape=(C, H, W) (CLI --input CxHxW)")
        return inp.name, tuple(dims[1:])

    def unsupported(self) -> None:
        """One FormatError naming every node this importer cannot map."""
        const = set(self.consts)
        bad = defaultdict(list)
        for i, node in enumerate(self.proto.graph.node):
            ins = [x for x in node.input if x]
            if node.op_type in FOLD and all(x in const for x in ins):
                const.update(node.output)
            elif node.op_type not in ACT_OPS or node.domain not in ("", "ai.onnx"):
                bad[node.op_type].append(node.name or f"#{i}")
        if bad:
            listing = "; ".join(f"{op} ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})"
                                for op, names in sorted(bad.items()))
            raise FormatError(
                f"{self.path}: unsupported ONNX ops: {listing}. Supported on activations: "
                f"{', '.join(sorted(ACT_OPS))} (any op on constants is folded when NumPy "
                "can evaluate it). Replace these layers in the source model or simplify "
                "the graph (onnxsim) and export again")

    def fail(self, node, what: str):
        raise FormatError(f"{self.path}: node {node.name or node.op_type!r} ({node.op_type}): "
                          f"{what}")

    # -- helpers -----------------------------------------------------------------------
    def name_for(self, node, weight: str | None = None) -> str:
        base = None
        q = self.qconsts.get(weight) if weight else None
        weight = q.source if q is not None else weight
        if weight:
            w = re.sub(r"(_quantized|_dequantized|_DequantizeLinear_Output)$", "", weight)
            if w.endswith(".weight"):
                base = w[: -len(".weight")]
        base = _clean(base or node.name) or node.op_type.lower()
        if base == INPUT:
            base = "input_"
        name, k = base, 1
        while name in self.shapes or name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used[name] += 1
        return name

    def act(self, node, i=0) -> str:
        x = node.input[i]
        if x not in self.alias:
            what = "a constant" if x in self.consts else "an unknown tensor"
            self.fail(node, f"input {x!r} is {what}, expected an activation computed "
                      "earlier in the graph (nodes must be topologically sorted)")
        return self.alias[x]

    def const(self, node, i, required=True):
        if i >= len(node.input) or not node.input[i]:
            if required:
                self.fail(node, f"input #{i} is missing")
            return None
        x = node.input[i]
        if x not in self.consts:
            self.fail(node, f"input {x!r} must be a constant (initializer) for numharden, "
                      "but it is computed from the image")
        return self.consts[x]

    def add_node(self, node, op, inputs, attrs=None, params=None, name=None) -> str:
        name = name or self.name_for(node)
        n = Node(name, op, list(inputs), attrs or {}, {})
        for role, value in (params or {}).items():
            pname = f"{name}.{role}"
            n.params[role] = pname
            self.values[pname] = value
        try:
            self.shapes[name] = OPS[op][1](n, [self.shapes[i] for i in inputs])
        except ShapeError as e:
            self.fail(node, str(e))
        self.nodes.append(n)
        self.by_name[name] = n
        self.alias[node.output[0]] = name
        return name

    def param_value(self, tensor_name):
        return self.qconsts.get(tensor_name, self.consts[tensor_name])

    # -- walk --------------------------------------------------------------------------
    def run(self) -> Graph:
        for idx, node in enumerate(self.proto.graph.node):
            if idx in self.skip:
                continue
            ins = [x for x in node.input if x]
            if node.op_type in FOLD and all(x in self.consts for x in ins):
                args = [self.consts[x] if x else None for x in node.input]
                try:
                    self.consts.update(fold(node, args, self.qconsts, list(node.input)))
                except (ValueError, TypeError, IndexError) as e:
                    self.fail(node, f"constant folding failed ({e})")
                continue
            try:
                getattr(self, "op_" + node.op_type)(node)
            except NumhardenError:
                raise
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
                self.fail(node, f"malformed node ({type(e).__name__}: {e}); re-export the model")
        outs = self.proto.graph.output
        if len(outs) != 1 or outs[0].name not in self.alias or self.alias[outs[0].name] == INPUT:
            raise FormatError(f"{self.path}: expected one graph output computed from the "
                              f"input, found {[o.name for o in outs]}")
        return Graph(self.nodes, self.input_shape, self.alias[outs[0].name])

    def _spatial(self, node, x, kernel):
        h, w = self.shapes[x][1:]
        strides = list(_attr(node, "strides", [1, 1]))
        dil = list(_attr(node, "dilations", [1, 1]))
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        auto = _attr(node, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if len(kernel) != 2:
            self.fail(node, f"only 2-d kernels are supported, found kernel {kernel}")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * 4
            for ax, size in enumerate((h, w)):
                out = -(-size // strides[ax])
                total = max(0, (out - 1) * strides[ax] + (kernel[ax] - 1) * dil[ax] + 1 - size)
                small, big = total // 2, total - total // 2
                pads[ax], pads[ax + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
        elif auto == "VALID":
            pads = [0] * 4
        return {"kernel": list(kernel), "stride": strides,
                "padding": [pads[0], pads[2], pads[1], pads[3]], "dilation": dil}

    def op_Conv(self, node):
        x = self.act(node)
        wname = node.input[1]
        self.const(node, 1)
        w = self.param_value(wname)
        shape = (w.codes if isinstance(w, QConst) else w).shape
        if len(shape) != 4:
            self.fail(node, f"weight {wname!r} has shape {shape}; only 2-d convolutions "
                      "(O, I/groups, KH, KW) are supported")
        attrs = self._spatial(node, x, _attr(node, "kernel_shape", list(shape[2:])))
        groups = int(_attr(node, "group", 1))
        attrs = {"in_channels": self.shapes[x][0], "out_channels": shape[0], **attrs,
                 "groups": groups}
        params = {"weight": w}
        if len(node.input) > 2 and node.input[2]:
            self.const(node, 2)
            params["bias"] = self.param_value(node.input[2])
        self.add_node(node, "conv2d", [x], attrs, params, self.name_for(node, wname))

    def _linear(self, node, x, w, bias, wname):
        shape = (w.codes if isinstance(w, QConst) else w).shape
        if len(self.shapes[x]) != 1:
            self.fail(node, f"input has shape {self.shapes[x]}; a Gemm/MatMul needs flat "
                      "(N, F) input (insert Flatten)")
        params = {"weight": w} | ({} if bias is None else {"bias": bias})
        return self.add_node(node, "linear", [x], {"in_features": shape[1],
                                                   "out_features": shape[0]},
                             params, self.name_for(node, wname))

    def op_Gemm(self, node):
        x = self.act(node)
        self.const(node, 1)
        if _attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1.0 or \
                _attr(node, "beta", 1.0) != 1.0:
            self.fail(node, "only Gemm with transA=0, alpha=1, beta=1 maps to a linear layer")
        w = self.param_value(node.input[1])
        if not _attr(node, "transB", 0):
            w = _transpose(w)
        bias = None
        if len(node.input) > 2 and node.input[2]:
            self.const(node, 2)
            bias = self.param_value(node.input[2])
            if isinstance(bias, np.ndarray):
                bias = np.broadcast_to(bias, ((w.codes if isinstance(w, QConst) else w).shape[0],))
        self._linear(node, x, w, bias, node.input[1])

    def op_MatMul(self, node):
        x = self.act(node)
        self.const(node, 1)
        w = self.param_value(node.input[1])
        if (w.codes if isinstance(w, QConst) else w).ndim != 2:
            self.fail(node, "the constant operand must be a 2-d (F, O) matrix")
        self._linear(node, x, _transpose(w), None, node.input[1])

    def op_Add(self, node):
        a, b = node.input[0], node.input[1]
        if a in self.alias and b in self.alias:
            return self.add_node(node, "add", [self.alias[a], self.alias[b]])
        x, c = (a, b) if a in self.alias else (b, a)
        src = self.alias.get(x)
        prev = self.nodes[-1] if self.nodes else None
        if (prev is not None and prev.name == src and prev.op == "linear"
                and "bias" not in prev.params and len(self.readers[x]) == 1):
            out = prev.attrs["out_features"]
            if c not in self.consts:
                self.fail(node, "the bias of a MatMul must be a constant")
            bias = self.param_value(c)
            arr = bias.codes if isinstance(bias, QConst) else bias
            if arr.size not in (1, out):
                self.fail(node, f"bias has shape {arr.shape}, expected ({out},)")
            if isinstance(bias, np.ndarray):
                bias = np.broadcast_to(bias.reshape(-1), (out,))
            prev.params["bias"] = f"{prev.name}.bias"
            self.values[prev.params["bias"]] = bias
            self.alias[node.output[0]] = prev.name
            return
        if c in self.consts and not np.any(self.consts[c]):
            self.alias[node.output[0]] = src
            return
        self.fail(node, "adding a constant to an activation is supported only as the bias "
                  "of the MatMul right before it")

    def op_BatchNormalization(self, node):
        x = self.act(node)
        if _attr(node, "training_mode", 0):
            self.fail(node, "training_mode=1; export the model in eval mode")
        c = self.shapes[x][0]
        vals = [self.const(node, i) for i in range(1, 5)]
        if any(np.shape(v) != (c,) for v in vals):
            self.fail(node, f"scale, B, mean and var must have shape ({c},), found "
                      f"{[np.shape(v) for v in vals]}")
        params = dict(zip(("weight", "bias", "running_mean", "running_var"), vals))
        self.add_node(node, "batchnorm", [x], {"num_features": c,
                                               "eps": _f32(_attr(node, "epsilon", 1e-5)),
                                               "momentum": 0.1},
                      params, self.name_for(node, node.input[1]))

    def op_Relu(self, node):
        self.add_node(node, "relu", [self.act(node)])

    def _clip_bounds(self, node):
        lo = self.const(node, 1, required=False)
        hi = self.const(node, 2, required=False)
        lo = _f32(lo) if lo is not None else _attr(node, "min", None)
        hi = _f32(hi) if hi is not None else _attr(node, "max", None)
        return lo, hi

    def op_Clip(self, node):
        x = self.act(node)
        lo, hi = self._clip_bounds(node)
        if self._act_quant_pattern(node, x, lo, hi):
            return
        if lo == 0.0 and hi is None:
            return self.add_node(node, "relu", [x])
        if lo == 0.0 and hi == 6.0:
            return self.add_node(node, "relu6", [x])
        lo = -3.4028234663852886e38 if lo is None else lo
        hi = 3.4028234663852886e38 if hi is None else hi
        self.add_node(node, "hardtanh", [x], {"min_val": float(lo), "max_val": float(hi)})

    def _only_reader(self, tensor, op_type):
        r = self.readers.get(tensor, [])
        return r[0] if len(r) == 1 and r[0].op_type == op_type else None

    def _act_quant_pattern(self, node, x, lo, hi) -> bool:
        """Clip(0, c) -> Div(s) -> Round -> Mul(s), with c / s = 2**bits - 1."""
        if lo != 0.0 or hi is None or not hi > 0:
            return False
        div = self._only_reader(node.output[0], "Div")
        rnd = div and self._only_reader(div.output[0], "Round")
        mul = rnd and self._only_reader(rnd.output[0], "Mul")
        if not mul or div.input[1] not in self.consts or rnd.output[0] not in mul.input:
            return False
        s = self.consts[div.input[1]]
        other = [i for i in mul.input if i != rnd.output[0]]
        if np.size(s) != 1 or len(other) != 1 or other[0] not in self.consts or \
                np.float32(self.consts[other[0]]) != np.float32(s):
            return False
        levels = float(np.float32(hi) / np.float32(s))
        bits = round(math.log2(levels + 1)) if levels > 0 else 0
        if not 1 <= bits <= 16 or abs(levels - (2 ** bits - 1)) > 1e-3 * levels:
            return False
        name = self.name_for(node)
        self.add_node(node, "act_quant", [x], {"bits": bits},
                      {"clip": np.full(1, hi, np.float32)}, name)
        self.skip.update(self.index[id(n)] for n in (div, rnd, mul))
        self.alias[mul.output[0]] = name
        return True

    def op_QuantizeLinear(self, node):
        x = self.act(node)
        deq = self._only_reader(node.output[0], "DequantizeLinear")
        s = self.const(node, 1)
        zp = self.const(node, 2, required=False)
        zp = np.zeros((), np.uint8) if zp is None else zp
        if deq is None or np.size(s) != 1 or np.size(zp) != 1:
            self.fail(node, "an activation QuantizeLinear must be per-tensor and read only "
                      "by a DequantizeLinear")
        d_s, d_zp = self.const(deq, 1), self.const(deq, 2, required=False)
        d_zp = np.zeros((), np.uint8) if d_zp is None else d_zp
        if np.float32(d_s) != np.float32(s) or int(np.ravel(d_zp)[0]) != int(np.ravel(zp)[0]):
            self.fail(node, "QuantizeLinear and its DequantizeLinear use different scales "
                      "or zero points")
        z = int(np.ravel(zp)[0])
        levels = qrange(np.asarray(zp).dtype)[1] - z
        src = self.nodes_by_name(x)
        # zero point at the bottom of the code range: the quantiser itself clamps at 0
        # (a fused ReLU, as ONNX Runtime writes Conv+Relu), exactly like act_quant
        nonneg = z == qrange(np.asarray(zp).dtype)[0] or self._nonneg(src)
        bits = round(math.log2(levels + 1)) if levels > 0 else 0
        if not (nonneg and 1 <= bits <= 16 and levels == 2 ** bits - 1):
            if not nonneg:
                self.fail(node, f"quantizes a tensor that may be negative (its producer is "
                          f"{src.op if src else 'the graph input'}) with zero point {z}; "
                          "numharden quantizes activations after ReLU/ReLU6 only. Exclude "
                          "this tensor from quantization (e.g. nodes_to_exclude) and export again")
            self.fail(node, f"zero point {z} of {np.asarray(zp).dtype} leaves {levels} "
                      "levels above it, not 2**bits - 1; use zero point 0 (uint8) or 0/-128 (int8)")
        clip = np.full(1, np.float32(s) * np.float32(levels), np.float32)
        name = self.add_node(node, "act_quant", [x], {"bits": bits}, {"clip": clip})
        self.skip.add(self.index[id(deq)])
        self.alias[deq.output[0]] = name

    def _nonneg(self, node) -> bool:
        """True when ``node``'s output cannot be negative (ReLU-like, or pooling,
        concatenation and flattening of such outputs)."""
        if node is None:
            return False
        if node.op in ("relu", "relu6", "act_quant"):
            return True
        if node.op == "hardtanh":
            return node.attrs["min_val"] >= 0
        if node.op in ("maxpool2d", "avgpool2d", "global_avgpool", "concat", "flatten"):
            return all(self._nonneg(self.nodes_by_name(i)) for i in node.inputs)
        return False

    def nodes_by_name(self, name):
        return self.by_name.get(name)

    def op_DequantizeLinear(self, node):
        self.fail(node, "DequantizeLinear of an activation must follow its QuantizeLinear")

    def _pool(self, node, op):
        x = self.act(node)
        if len(node.output) > 1 and node.output[1]:
            self.fail(node, "the Indices output is not supported")
        if _attr(node, "storage_order", 0):
            self.fail(node, "storage_order=1 is not supported")
        attrs = self._spatial(node, x, list(_attr(node, "kernel_shape")))
        attrs["ceil_mode"] = bool(_attr(node, "ceil_mode", 0))
        if op == "avgpool2d":
            if attrs.pop("dilation") != [1, 1]:
                self.fail(node, "dilated average pooling is not supported")
            attrs["count_include_pad"] = bool(_attr(node, "count_include_pad", 0))
        self.add_node(node, op, [x], attrs)

    def op_MaxPool(self, node):
        self._pool(node, "maxpool2d")

    def op_AveragePool(self, node):
        self._pool(node, "avgpool2d")

    def op_GlobalAveragePool(self, node):
        self.add_node(node, "global_avgpool", [self.act(node)])

    def op_Concat(self, node):
        xs = [self.act(node, i) for i in range(len(node.input))]
        if _attr(node, "axis") not in (1, -3):
            self.fail(node, f"only channel concatenation (axis=1) is supported, found "
                      f"axis={_attr(node, 'axis')}")
        self.add_node(node, "concat", xs)

    def _flatten_or_alias(self, node, x, ok: bool, why: str):
        if not ok:
            self.fail(node, why)
        if len(self.shapes[x]) == 1:
            self.alias[node.output[0]] = x
        else:
            self.add_node(node, "flatten", [x])

    def op_Flatten(self, node):
        x = self.act(node)
        self._flatten_or_alias(node, x, _attr(node, "axis", 1) == 1,
                               "only Flatten with axis=1 (keep the batch) is supported")

    def op_Reshape(self, node):
        x = self.act(node)
        shape = [int(v) for v in np.ravel(self.const(node, 1))]
        feat = math.prod(self.shapes[x])
        # first dim: 0 (copy the batch), -1, or the batch size the exporter baked in
        ok = len(shape) == 2 and (shape[0] in (0, -1) or shape[0] > 0) and shape[1] in (-1, feat)
        self._flatten_or_alias(node, x, ok, f"Reshape to {shape} is supported only as a "
                               f"flatten to (N, {feat})")

    def op_Squeeze(self, node):
        x = self.act(node)
        axes = self.const(node, 1, required=False)
        axes = _attr(node, "axes") if axes is None else list(np.ravel(axes))
        s = self.shapes[x]
        ok = len(s) == 3 and s[1:] == (1, 1) and sorted(int(a) % 4 for a in (axes or [2, 3])) == [2, 3]
        self._flatten_or_alias(node, x, ok, f"Squeeze of {s} is supported only as a flatten "
                               "of (C, 1, 1)")

    def op_Slice(self, node):
        """A strided subsample of H, W from 0 to the end (the option-A shortcut's
        ``x[:, :, ::s, ::s]``) -> ``subsample_pad`` with no padding."""
        x = self.act(node)
        if len(node.input) < 3:  # opset < 10: starts/ends/axes as attributes
            self.fail(node, "Slice with attributes (opset < 10) is not supported; export "
                      "with opset >= 13")
        starts = [int(v) for v in np.ravel(self.const(node, 1))]
        ends = [int(v) for v in np.ravel(self.const(node, 2))]
        axes = self.const(node, 3, required=False)
        axes = list(range(len(starts))) if axes is None else [int(v) for v in np.ravel(axes)]
        steps = self.const(node, 4, required=False)
        steps = [1] * len(starts) if steps is None else [int(v) for v in np.ravel(steps)]
        shape = self.shapes[x]
        stride = {2: 1, 3: 1}
        for ax, st, en, sp in zip(axes, starts, ends, steps):
            ax = ax % 4
            full = en >= (shape[ax - 1] if ax and len(shape) == 3 else 2 ** 31 - 1)
            if len(shape) != 3 or st != 0 or not full or sp < 1 or (ax < 2 and sp != 1):
                self.fail(node, f"Slice(axes={axes}, starts={starts}, ends={ends}, "
                          f"steps={steps}) of {shape} is supported only as a strided "
                          "subsample of H and W from 0 to the end (x[:, :, ::s, ::s])")
            if ax in stride:
                stride[ax] = sp
        src = self.by_name.get(x)
        if (src is not None and src.op == "subsample_pad" and src.attrs["pad_channels"] == [0, 0]
                and self.nodes and self.nodes[-1] is src and len(self.readers[node.input[0]]) == 1
                and all(a == 1 or b == 1 for a, b in zip(src.attrs["stride"], stride.values()))):
            # x[:, :, ::2][..., ::2] exported as two Slices: one subsample
            src.attrs["stride"] = [max(a, b) for a, b in zip(src.attrs["stride"], stride.values())]
            self.shapes[x] = OPS["subsample_pad"][1](src, [self.shapes[src.inputs[0]]])
            self.alias[node.output[0]] = x
            return
        self.add_node(node, "subsample_pad", [x], {"stride": [stride[2], stride[3]],
                                                   "pad_channels": [0, 0]})

    def op_Pad(self, node):
        """Zero padding of the channel axis only -> ``subsample_pad`` (merged into the
        Slice before it when that Slice feeds only this Pad)."""
        x = self.act(node)
        mode = _attr(node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if len(node.input) < 2:
            self.fail(node, "Pad with attributes (opset < 11) is not supported; export with "
                      "opset >= 13")
        pads = [int(v) for v in np.ravel(self.const(node, 1))]
        value = self.const(node, 2, required=False)
        shape = self.shapes[x]
        if (mode != "constant" or len(pads) != 8 or len(shape) != 3
                or any(pads[i] for i in (0, 2, 3, 4, 6, 7)) or min(pads) < 0
                or (value is not None and float(np.ravel(value)[0]) != 0.0)
                or (len(node.input) > 3 and node.input[3])):
            self.fail(node, f"Pad(mode={mode}, pads={pads}) of {shape} is supported only as "
                      "zero padding of the channel axis (the option-A shortcut's F.pad)")
        before, after = pads[1], pads[5]
        src = self.by_name.get(x)
        if (src is not None and src.op == "subsample_pad" and src.attrs["pad_channels"] == [0, 0]
                and self.nodes and self.nodes[-1] is src
                and len(self.readers[node.input[0]]) == 1):
            src.attrs["pad_channels"] = [before, after]
            self.shapes[x] = OPS["subsample_pad"][1](src, [self.shapes[src.inputs[0]]])
            self.alias[node.output[0]] = x
            return
        self.add_node(node, "subsample_pad", [x], {"stride": [1, 1],
                                                   "pad_channels": [before, after]})

    def op_Identity(self, node):
        self.alias[node.output[0]] = self.act(node)

    op_Dropout = op_Identity

    def op_LogSoftmax(self, node):
        x = self.act(node)
        if len(self.shapes[x]) != 1 or _attr(node, "axis", -1) not in (1, -1):
            self.fail(node, "LogSoftmax is supported over the class axis of (N, K) logits")
        self.add_node(node, "log_softmax", [x])

    def op_Div(self, node):
        self.fail(node, "Div of an activation is supported only inside the activation "
                  "quantiser pattern Clip -> Div -> Round -> Mul")

    op_Round = op_Mul = op_Div


def _transpose(w):
    if isinstance(w, QConst):
        axis = None if w.axis is None else 1 - w.axis
        return QConst(np.ascontiguousarray(w.codes.T), w.scale, w.zero_point, axis, w.source)
    return np.ascontiguousarray(w.T)


def _stored(name, value, fmt_hint, path) -> StoredTensor:
    """A parameter's StoredTensor: codes from QDQ, else fp32, or the format recorded by
    numharden's export (re-derived codes checked bit for bit)."""
    if isinstance(value, QConst):
        if value.axis not in (None, 0):
            raise FormatError(f"{path}: tensor {value.source!r} is quantized along axis "
                              f"{value.axis}; numharden keeps per-channel scales along the "
                              "output channels (axis 0 of conv/linear weights)")
        zp = value.zero_point.astype(np.int32)
        ch = "/ch" if value.axis is not None else ""
        if value.codes.dtype == np.int8 and not np.any(zp):
            return StoredTensor(value.codes, parse_format("int8" + ch), value.scale, None,
                                value.axis)
        codes = value.codes.astype(np.int16)
        if value.codes.dtype == np.int8:
            codes, zp = codes + 128, zp + 128
        return StoredTensor(codes.astype(np.uint8), parse_format("uint8" + ch), value.scale,
                            zp, value.axis)
    x = np.ascontiguousarray(value, dtype=np.float32)
    if fmt_hint and fmt_hint.get("format", "fp32") != "fp32":
        return _reencode(name, x, fmt_hint, path)
    return StoredTensor(x.copy(), parse_format("fp32"))  # NaN/Inf bits kept (faulted exports)


def _reencode(name, x, hint, path) -> StoredTensor:
    fmt = parse_format(hint["format"])
    scale = None if hint.get("scale") is None else np.asarray(hint["scale"], np.float32)
    zp = None if hint.get("zero_point") is None else np.asarray(hint["zero_point"], np.int32)
    axis = hint.get("axis")
    if fmt.kind == "float":
        if fmt.spec == "bf16":
            codes = (x.view(np.uint32) >> 16).astype(np.uint16)
        else:
            codes = x.astype(fmt.storage_dtype)
    else:
        if fmt.kind == "fixed":
            q = np.rint(x.astype(np.float64) * 2.0 ** fmt.frac_bits)
        else:
            b = [1] * x.ndim
            if axis is not None:
                b[axis] = -1
            q = np.rint(x / scale.reshape(b)) + (0 if zp is None else zp.reshape(b))
        codes = q.astype(fmt.storage_dtype)
    st = StoredTensor(codes, fmt, scale, zp, axis)
    if not np.array_equal(st.decode().view(np.uint32), x.view(np.uint32)):
        raise FormatError(f"{path}: tensor {name!r} is recorded as {fmt.spec} in the file's "
                          f"metadata but its values are not exactly representable in it; the "
                          f"file was edited after export. Remove the '{FORMATS_KEY}' metadata "
                          "to import it as fp32")
    return st


def from_onnx(path, *, mean=None, std=None, classes=None, input_shape=None,
              weight_format=None) -> Model:
    """Import an ONNX model (float or QDQ-quantized) as a numharden Model.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    mean, std : sequence of float, optional
        Per-channel input normalisation (stored in ``meta['normalization']``).
    classes : sequence of str, optional
        Class names, one per output.
    input_shape : tuple of int, optional
        (C, H, W) if the file's input has symbolic spatial dimensions.
    weight_format : str, optional
        Re-encode every conv/linear weight in this format (e.g. ``'int8/ch'``) from its
        imported values; default: keep what the file stores.

    Raises
    ------
    FormatError
        Unreadable file, unsupported ops (all listed in one message), or a pattern that
        has no numharden equivalent (naming the node).
    """
    onnx = require_onnx()
    path = str(path)
    if not Path(path).is_file():
        raise FormatError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(path)
    except Exception as e:
        raise FormatError(f"{path}: not a readable ONNX model ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'no detail'}); check "
                          "that the file is complete and really ONNX") from None
    if not len(proto.graph.node):
        raise FormatError(f"{path}: the ONNX graph has no nodes; the file is empty, "
                          "truncated or not an ONNX model")
    imp = _Importer(proto, path, input_shape)
    imp.unsupported()
    graph = imp.run()
    props = {p.key: p.value for p in proto.metadata_props}
    hints, meta = {}, {}
    try:
        hints = json.loads(props.get(FORMATS_KEY, "{}"))
        meta = json.loads(props.get(META_KEY, "{}"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: metadata {FORMATS_KEY!r}/{META_KEY!r} is not valid JSON "
                          f"({e}); remove it or re-export") from None
    params = {n: _stored(n, v, hints.get(n), path) for n, v in imp.values.items()}
    meta = meta or {"arch": proto.graph.name or Path(path).stem,
                    "source": {"onnx": Path(path).name, "producer": proto.producer_name,
                               "opset": max((o.version for o in proto.opset_import), default=0)}}
    _options_meta(meta, graph, mean, std, classes)
    if weight_format is not None:
        requantize(graph, params, weight_format)
        meta["weight_format"] = parse_format(weight_format).spec
    return Model(graph, params, meta)


def requantize(graph, params, weight_format) -> None:
    """Encode every conv/linear weight of ``params`` in ``weight_format`` (in place)."""
    fmt = parse_format(weight_format)
    for n in graph.nodes:
        if n.op in ("conv2d", "linear"):
            name = n.params["weight"]
            params[name] = fmt.encode(params[name].decode(), axis=0 if fmt.per_channel else None,
                                      name=name)


def _options_meta(meta, graph, mean, std, classes) -> None:
    c = graph.input_shape[0]
    if (mean is None) != (std is None):
        raise ConfigError("give both mean and std (one value per input channel) or neither")
    if mean is not None:
        mean, std = [float(v) for v in mean], [float(v) for v in std]
        if len(mean) not in (1, c) or len(std) != len(mean) or min(std) <= 0:
            raise ConfigError(f"mean/std need 1 or {c} values (std > 0); found mean={mean}, "
                              f"std={std}")
        meta["normalization"] = {"mean": mean, "std": std}
    if classes is not None:
        classes = [str(v) for v in classes]
        if len(classes) != graph.num_classes:
            raise ConfigError(f"{len(classes)} class names given but the model has "
                              f"{graph.num_classes} outputs")
        meta["class_names"] = classes
