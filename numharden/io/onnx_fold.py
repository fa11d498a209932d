"""Constant folding for ONNX import: NumPy evaluation of initializer-only subgraphs.

Only ops whose every input is a constant (initializer, ``Constant`` node or an earlier
folded result) are evaluated here; what reaches activations is mapped in onnx_import.
``QuantizeLinear`` / ``DequantizeLinear`` on constants keep their integer codes next to
the float value, so a quantized weight is stored as the codes the file holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError


@dataclass
class QConst:
    """A constant that came out of DequantizeLinear: codes, scale, zero point, axis."""

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    source: str           # name of the integer tensor the file holds


def qrange(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _bshape(ndim, axis, scale):
    if scale.ndim == 0:
        return scale
    shape = [1] * ndim
    shape[axis] = scale.size
    return scale.reshape(shape)


def quantize_linear(x, scale, zp, axis):
    """ONNX QuantizeLinear: saturate(rint(x / scale) + zero_point), half to even."""
    dtype = zp.dtype if zp is not None else np.dtype(np.uint8)
    zp = np.zeros((), dtype) if zp is None else zp
    lo, hi = qrange(dtype)
    q = np.rint(x.astype(np.float32) / _bshape(x.ndim, axis, scale.astype(np.float32)))
    q = q + _bshape(x.ndim, axis, zp.astype(np.float32))
    return np.clip(q, lo, hi).astype(dtype)


def dequantize_linear(q, scale, zp, axis):
    """ONNX DequantizeLinear: (q - zero_point) * scale in float32."""
    zp = np.zeros((), q.dtype) if zp is None else zp
    d = q.astype(np.int32) - _bshape(q.ndim, axis, zp.astype(np.int32))
    return d.astype(np.float32) * _bshape(q.ndim, axis, scale.astype(np.float32))


def _attr(node, name, default=None):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _reshape(x, shape):
    shape = [int(s) for s in shape]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _axes(node, args, ndim):
    axes = args[1] if len(args) > 1 and args[1] is not None else _attr(node, "axes")
    return None if axes is None else tuple(int(a) % ndim for a in np.ravel(axes))


def _squeeze(node, a):
    axes = _axes(node, a, a[0].ndim)
    return np.squeeze(a[0], axis=axes)


def _unsqueeze(node, a):
    axes = _axes(node, a, a[0].ndim + len(np.ravel(a[1] if len(a) > 1 else _attr(node, "axes"))))
    out = a[0]
    for ax in sorted(axes):
        out = np.expand_dims(out, ax)
    return out


def _reduce(fn, node, a):
    axes = _axes(node, a, a[0].ndim)
    return fn(a[0], axis=axes, keepdims=bool(_attr(node, "keepdims", 1)))


def _clip(node, a):
    lo = a[1] if len(a) > 1 and a[1] is not None else _attr(node, "min", -np.inf)
    hi = a[2] if len(a) > 2 and a[2] is not None else _attr(node, "max", np.inf)
    return np.clip(a[0], lo, hi)


def _cast(node, a):
    from onnx import helper
    return a[0].astype(helper.tensor_dtype_to_np_dtype(_attr(node, "to")))


def _constant_of_shape(node, a):
    from onnx import numpy_helper
    value = _attr(node, "value")
    fill = np.zeros(1, np.float32) if value is None else numpy_helper.to_array(value).ravel()
    return np.full(tuple(int(v) for v in np.ravel(a[0])), fill[0], fill.dtype)


def _slice(node, a):
    x = a[0]
    starts, ends = np.ravel(a[1]).astype(np.int64), np.ravel(a[2]).astype(np.int64)
    axes = (np.ravel(a[3]).astype(np.int64) if len(a) > 3 and a[3] is not None
            else np.arange(len(starts)))
    steps = (np.ravel(a[4]).astype(np.int64) if len(a) > 4 and a[4] is not None
             else np.ones(len(starts), np.int64))
    index = [slice(None)] * x.ndim
    for ax, st, en, sp in zip(axes, starts, ends, steps):
        # ONNX clamps out-of-range bounds as Python slicing does (INT64 max/min included)
        index[int(ax) % x.ndim] = slice(int(st), int(en), int(sp))
    return x[tuple(index)]


def _axis_of(node, x):
    axis = _attr(node, "axis", 1)
    return None if x.ndim == 0 else int(axis) % max(x.ndim, 1)


def _scalar_axis(node, scale, x):
    """None for a per-tensor scale (a scalar or one element), else the channel axis."""
    return None if np.size(scale) == 1 and np.ndim(scale) <= 1 else _axis_of(node, x)


def _q(node, a):
    x, s = a[0], a[1]
    zp = a[2] if len(a) > 2 and a[2] is not None else None
    return quantize_linear(x, s, zp, _scalar_axis(node, s, x))


FOLD = {
    "Identity": lambda n, a: a[0],
    "Transpose": lambda n, a: np.transpose(a[0], _attr(n, "perm")),
    "Reshape": lambda n, a: _reshape(a[0], a[1]),
    "Flatten": lambda n, a: a[0].reshape(int(np.prod(a[0].shape[:_attr(n, "axis", 1)])), -1),
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Cast": _cast,
    "Add": lambda n, a: a[0] + a[1],
    "Sub": lambda n, a: a[0] - a[1],
    "Mul": lambda n, a: a[0] * a[1],
    "Div": lambda n, a: a[0] / a[1],
    "Neg": lambda n, a: -a[0],
    "Abs": lambda n, a: np.abs(a[0]),
    "Max": lambda n, a: np.maximum.reduce(a) if len(a) > 1 else a[0],
    "Min": lambda n, a: np.minimum.reduce(a) if len(a) > 1 else a[0],
    "Clip": lambda n, a: _clip(n, a),
    "ReduceMax": lambda n, a: _reduce(np.max, n, a),
    "ReduceMin": lambda n, a: _reduce(np.min, n, a),
    "Sqrt": lambda n, a: np.sqrt(a[0]),
    "Concat": lambda n, a: np.concatenate(a, axis=_attr(n, "axis")),
    "Gather": lambda n, a: np.take(a[0], a[1].astype(np.int64), axis=_attr(n, "axis", 0)),
    "Shape": lambda n, a: np.asarray(a[0].shape, np.int64),
    "ConstantOfShape": _constant_of_shape,
    "Slice": _slice,
    "QuantizeLinear": _q,
    "DequantizeLinear": None,     # handled by fold() to keep the codes
    "Constant": None,             # handled by fold()
}


def constant_value(node):
    from onnx import numpy_helper
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return np.asarray(a.f if a.name == "value_float" else a.i)
        if a.name in ("value_floats", "value_ints"):
            return np.asarray(list(a.floats) if a.name == "value_floats" else list(a.ints))
    raise FormatError(f"Constant node {node.name!r} has no value attribute this importer "
                      "reads (value, value_float(s), value_int(s)); re-export the model")


def fold(node, args, qconsts: dict, names) -> dict:
    """Evaluate a constant-only ``node``; returns {output name: value} and records
    DequantizeLinear outputs in ``qconsts``."""
    if node.op_type == "Constant":
        return {node.output[0]: constant_value(node)}
    if node.op_type == "DequantizeLinear":
        q, s = args[0], args[1]
        zp = args[2] if len(args) > 2 and args[2] is not None else np.zeros((), q.dtype)
        if q.dtype.kind not in "iu" or q.dtype.itemsize != 1:
            # int32 biases (x_scale * w_scale) are stored decoded as float
            return {node.output[0]: dequantize_linear(q, s, zp, _scalar_axis(node, s, q))}
        axis = _scalar_axis(node, s, q)
        if axis is None:
            s, zp = np.asarray(s).reshape(()), np.asarray(zp).reshape(())
        qconsts[node.output[0]] = QConst(q, np.asarray(s, np.float32), np.asarray(zp), axis,
                                         names[0])
        return {node.output[0]: dequantize_linear(q, s, zp, axis)}
    with np.errstate(all="ignore"):
        return {node.output[0]: np.asarray(FOLD[node.op_type](node, args))}
