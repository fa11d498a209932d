"""numharden Model -> ONNX (docs/ONNX.md). The stored tensors are exported as they are
now (faulted, varied or hardened): 8-bit integer codes as int8/uint8 initializers read
through DequantizeLinear (``qdq=True``), everything else as its decoded float32 values,
with each tensor's numharden format, scale and zero point in the model's metadata so
:func:`from_onnx` restores the same stored codes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..graph.graph import INPUT
from .onnx_import import FORMATS_KEY, META_KEY, require_onnx

OPSET = 13
_QDQ_DTYPES = {("int", 8): np.int8, ("affine", 8): np.uint8}


def _hint(t) -> dict:
    return {"format": t.fmt.spec,
            "scale": None if t.scale is None else np.asarray(t.scale, np.float64).tolist(),
            "zero_point": None if t.zero_point is None else np.asarray(t.zero_point).tolist(),
            "axis": t.axis}


class _Writer:
    def __init__(self, model, qdq: bool):
        from onnx import helper, numpy_helper
        self.h, self.nh = helper, numpy_helper
        self.model, self.qdq = model, qdq
        self.nodes, self.inits, self.hints = [], [], {}

    def init(self, name, value):
        self.inits.append(self.nh.from_array(np.asarray(value), name))
        return name

    def param(self, pname) -> str:
        """Name of the float tensor that feeds a node with parameter ``pname``."""
        t = self.model.params[pname]
        self.hints[pname] = _hint(t)
        dtype = _QDQ_DTYPES.get((t.fmt.kind, t.fmt.bits)) if self.qdq else None
        if dtype is None:
            with np.errstate(all="ignore"):
                return self.init(pname, np.ascontiguousarray(t.decode(), np.float32))
        zp = np.zeros_like(t.scale, dtype) if t.zero_point is None else \
            t.zero_point.astype(dtype)
        ins = [self.init(pname, t.codes.astype(dtype)),
               self.init(f"{pname}_scale", t.scale.astype(np.float32)),
               self.init(f"{pname}_zero_point", zp)]
        kw = {} if t.axis is None else {"axis": int(t.axis)}
        self.nodes.append(self.h.make_node("DequantizeLinear", ins, [f"{pname}_dq"],
                                           name=f"{pname}_dq", **kw))
        return f"{pname}_dq"

    def emit(self, node, x):
        h, a, out, name = self.h, node.attrs, [node.name], node.name
        add = self.nodes.append
        if node.op == "act_quant":
            return self._act_quant(node, x[0])
        p = {r: self.param(n) for r, n in node.params.items()}
        if node.op == "conv2d":
            t, b, l, r = a["padding"]
            add(h.make_node("Conv", [x[0], p["weight"]] + ([p["bias"]] if "bias" in p else []),
                            out, name=name, kernel_shape=a["kernel"], strides=a["stride"],
                            pads=[t, l, b, r], dilations=a["dilation"], group=a["groups"]))
        elif node.op == "linear":
            add(h.make_node("Gemm", [x[0], p["weight"]] + ([p["bias"]] if "bias" in p else []),
                            out, name=name, transB=1))
        elif node.op == "batchnorm":
            add(h.make_node("BatchNormalization", [x[0]] + [p[r] for r in (
                "weight", "bias", "running_mean", "running_var")], out, name=name,
                epsilon=a["eps"]))
        elif node.op in ("relu6", "hardtanh"):
            lo, hi = (0.0, 6.0) if node.op == "relu6" else (a["min_val"], a["max_val"])
            add(h.make_node("Clip", [x[0], self.init(f"{name}.min", np.float32(lo)),
                                     self.init(f"{name}.max", np.float32(hi))], out, name=name))
        elif node.op in ("maxpool2d", "avgpool2d"):
            t, b, l, r = a["padding"]
            kw = {"kernel_shape": a["kernel"], "strides": a["stride"], "pads": [t, l, b, r],
                  "ceil_mode": int(a.get("ceil_mode", False))}
            if node.op == "maxpool2d":
                add(h.make_node("MaxPool", x, out, name=name, dilations=a["dilation"], **kw))
            else:
                add(h.make_node("AveragePool", x, out, name=name,
                                count_include_pad=int(a["count_include_pad"]), **kw))
        elif node.op == "subsample_pad":  # Slice (strided) then Pad (zero channels)
            (sh, sw), (before, after) = a["stride"], a["pad_channels"]
            big = np.iinfo(np.int64).max
            add(h.make_node("Slice", [x[0], self.init(f"{name}.starts", np.zeros(2, np.int64)),
                                      self.init(f"{name}.ends", np.full(2, big, np.int64)),
                                      self.init(f"{name}.axes", np.array([2, 3], np.int64)),
                                      self.init(f"{name}.steps", np.array([sh, sw], np.int64))],
                            [f"{name}.sliced"], name=name))
            pads = np.array([0, before, 0, 0, 0, after, 0, 0], np.int64)
            add(h.make_node("Pad", [f"{name}.sliced", self.init(f"{name}.pads", pads)], out,
                            name=f"{name}.pad", mode="constant"))
        else:
            op, kw = {"relu": ("Relu", {}), "global_avgpool": ("GlobalAveragePool", {}),
                      "add": ("Add", {}), "concat": ("Concat", {"axis": 1}),
                      "flatten": ("Flatten", {"axis": 1}),
                      "log_softmax": ("LogSoftmax", {"axis": 1})}[node.op]
            add(h.make_node(op, x, out, name=name, **kw))

    def _act_quant(self, node, x):
        """clip(x, 0, c) / s -> Round (half to even) -> * s, s = c / (2**bits - 1) in
        float32: the arithmetic of ops.act_quant."""
        t = self.model.params[node.params["clip"]]
        self.hints[node.params["clip"]] = _hint(t)
        with np.errstate(all="ignore"):
            c = np.float32(t.decode().reshape(-1)[0])
            s = np.float32(c / np.float32(2 ** node.attrs["bits"] - 1))
        n, h = node.name, self.h
        self.nodes += [
            h.make_node("Clip", [x, self.init(f"{n}.lo", np.float32(0)),
                                 self.init(node.params["clip"], c)], [f"{n}.clipped"], name=n),
            h.make_node("Div", [f"{n}.clipped", self.init(f"{n}.step", s)], [f"{n}.scaled"],
                        name=f"{n}.div"),
            h.make_node("Round", [f"{n}.scaled"], [f"{n}.codes"], name=f"{n}.round"),
            h.make_node("Mul", [f"{n}.codes", f"{n}.step"], [n], name=f"{n}.mul")]


def to_onnx(model, path=None, *, qdq: bool = True, opset: int = OPSET):
    """Export ``model`` (its stored tensors as they are now) to ONNX.

    Parameters
    ----------
    model : Model
    path : str or Path, optional
        Written atomically when given.
    qdq : bool
        8-bit integer weights (int8, uint8, per tensor or channel) as int8/uint8 codes
        with DequantizeLinear; False exports every tensor as decoded float32.
    opset : int
        ONNX opset (>= 13, where DequantizeLinear has per-axis scales).

    Returns
    -------
    onnx.ModelProto
        Input ``input`` (N, C, H, W) float32, output = the graph's output node.
    """
    onnx = require_onnx()
    if int(opset) < 13:
        raise ConfigError(f"opset must be >= 13 (per-axis DequantizeLinear), got {opset}")
    w = _Writer(model, qdq)
    g = model.graph
    for node in g.nodes:
        w.emit(node, ["input" if i == INPUT else i for i in node.inputs])
    h = w.h
    c, hh, ww = g.input_shape
    out_shape = ["N", *g.shapes[g.output]]
    graph = h.make_graph(
        w.nodes, str(model.meta.get("arch") or "numharden"),
        [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", c, hh, ww])],
        [h.make_tensor_value_info(g.output, onnx.TensorProto.FLOAT, out_shape)], w.inits)
    proto = h.make_model(graph, producer_name="numharden",
                         opset_imports=[h.make_opsetid("", int(opset))])
    proto.ir_version = min(proto.ir_version, 8)  # readable by older runtimes
    meta = {META_KEY: json.dumps(model.meta, default=str), FORMATS_KEY: json.dumps(w.hints)}
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    if path is not None:
        _atomic_save(onnx, proto, Path(path))
    return proto


def _atomic_save(onnx, proto, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(proto.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
