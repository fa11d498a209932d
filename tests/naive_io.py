"""Slow, independent twins of numharden's file readers and writers, for tests only.

They use ``struct`` and plain loops so they share no code path with the library.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

# IDX type code -> (struct format char, element size, numpy dtype)
_IDX = {
    0x08: ("B", 1, np.uint8),
    0x09: ("b", 1, np.int8),
    0x0B: ("h", 2, np.int16),
    0x0C: ("i", 4, np.int32),
    0x0D: ("f", 4, np.float32),
    0x0E: ("d", 8, np.float64),
}
_CODE_OF = {np.dtype(v[2]): k for k, v in _IDX.items()}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise ``arr`` as IDX, one struct.pack per element."""
    arr = np.asarray(arr)
    code = _CODE_OF[arr.dtype]
    fmt = _IDX[code][0]
    out = bytearray(b"\x00\x00" + bytes([code, arr.ndim]))
    for d in arr.shape:
        out += struct.pack(">I", d)
    for v in arr.reshape(-1).tolist():
        out += struct.pack(">" + fmt, v)
    return bytes(out)


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    Path(path).write_bytes(gzip.compress(data) if gz else data)
    return Path(path)


def naive_read_idx(path: Path, max_items: int | None = None) -> np.ndarray:
    """Parse an IDX file element by element (optionally only the first ``max_items``
    entries of the first dimension)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    assert data[0] == 0 and data[1] == 0
    fmt, size, dtype = _IDX[data[2]]
    ndim = data[3]
    shape = [struct.unpack(">I", data[4 + 4 * i: 8 + 4 * i])[0] for i in range(ndim)]
    if max_items is not None:
        shape[0] = min(shape[0], max_items)
    count = 1
    for d in shape:
        count *= d
    pos = 4 + 4 * ndim
    vals = []
    for _ in range(count):
        vals.append(struct.unpack(">" + fmt, data[pos:pos + size])[0])
        pos += size
    return np.array(vals, dtype=dtype).reshape(shape)


# -- model files: an h5py-only reader and NCHW interpreter written from docs/FORMAT.md ----
def naive_decode(fmt: str, codes, scale=None, zero_point=None, axis=None) -> np.ndarray:
    """Real values of stored codes, per the table of FORMAT.md section 5 (float64)."""
    import re

    fmt = fmt.lower()
    codes = np.asarray(codes)
    if fmt in ("fp32", "fp16"):
        return codes.astype(np.float64)
    if fmt == "bf16":
        return (codes.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    m = re.fullmatch(r"q(\d+)\.(\d+)", fmt)
    if m:
        return codes.astype(np.float64) * 2.0 ** -int(m.group(2))
    q = codes.astype(np.float64)
    shape = [1] * codes.ndim
    if axis is not None:
        shape[axis] = -1
    if zero_point is not None:
        q = q - np.asarray(zero_point, np.float64).reshape(shape)
    # the engine multiplies in float32; do the same so that results match bit for bit
    return (q.astype(np.float32) * np.asarray(scale, np.float32).reshape(shape)).astype(np.float64)


def naive_read_model(path):
    """(graph dict, meta dict, {param name: float64 array}) read with h5py alone."""
    import json

    import h5py

    with h5py.File(path, "r") as f:
        graph = json.loads(f["graph"][()])
        meta = json.loads(f["meta"][()])
        params = {}
        for name, g in f["params"].items():
            axis = int(g.attrs["axis"]) if "axis" in g.attrs else None
            params[name] = naive_decode(
                g.attrs["format"], g["codes"][()],
                g["scale"][()] if "scale" in g else None,
                g["zero_point"][()] if "zero_point" in g else None, axis)
    return graph, meta, params


def _pool_len(size, k, s, p0, p1, d, ceil):
    span = size + p0 + p1 - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + p0:
        out -= 1
    return out


def _conv(x, w, b, a):
    n, ci, h, wd = x.shape
    co, cig, kh, kw = w.shape
    sh, sw = a["stride"]
    pt, pb, pl, pr = a["padding"]
    dh, dw = a["dilation"]
    xp = np.zeros((n, ci, h + pt + pb, wd + pl + pr))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, co, ho, wo))
    per_group = co // a["groups"]
    for o in range(co):
        g = o // per_group
        for i in range(ho):
            for j in range(wo):
                acc = np.zeros(n)
                for c in range(cig):
                    for u in range(kh):
                        for v in range(kw):
                            acc += w[o, c, u, v] * xp[:, g * cig + c, i * sh + u * dh, j * sw + v * dw]
                y[:, o, i, j] = acc + (b[o] if b is not None else 0.0)
    return y


def _pool(x, a, kind):
    n, c, h, wd = x.shape
    kh, kw = a["kernel"]
    sh, sw = a["stride"]
    pt, pb, pl, pr = a["padding"]
    dh, dw = a.get("dilation", [1, 1])
    ho = _pool_len(h, kh, sh, pt, pb, dh, a["ceil_mode"])
    wo = _pool_len(wd, kw, sw, pl, pr, dw, a["ceil_mode"])
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            vals, count = [], 0
            for u in range(kh):
                for v in range(kw):
                    r, s = i * sh + u * dh - pt, j * sw + v * dw - pl
                    inside = 0 <= r < h and 0 <= s < wd
                    in_pad = -pt <= r < h + pb and -pl <= s < wd + pr
                    if inside:
                        vals.append(x[:, :, r, s])
                    if inside or (kind == "avg" and a["count_include_pad"] and in_pad):
                        count += 1
            stack = np.stack(vals)
            y[:, :, i, j] = stack.max(0) if kind == "max" else stack.sum(0) / count
    return y


def naive_forward(graph: dict, params: dict, x: np.ndarray) -> np.ndarray:
    """Evaluate a /graph dict on NCHW float64 input with the formulas of FORMAT.md 4.1."""
    env = {"input": np.asarray(x, np.float64)}
    for node in graph["nodes"]:
        op, a = node["op"], node["attrs"]
        p = {role: params[name] for role, name in node["params"].items()}
        ins = [env[i] for i in node["inputs"]]
        v = ins[0]
        if op == "conv2d":
            y = _conv(v, p["weight"], p.get("bias"), a)
        elif op == "linear":
            y = v @ p["weight"].T + (p["bias"] if "bias" in p else 0.0)
        elif op == "batchnorm":
            shape = (1, -1) + (1,) * (v.ndim - 2)
            r = lambda k: p[k].reshape(shape)  # noqa: E731
            y = r("weight") * (v - r("running_mean")) / np.sqrt(r("running_var") + a["eps"]) + r("bias")
        elif op == "relu":
            y = np.maximum(v, 0)
        elif op == "relu6":
            y = np.minimum(np.maximum(v, 0), 6)
        elif op == "hardtanh":
            y = np.minimum(np.maximum(v, a["min_val"]), a["max_val"])
        elif op == "act_quant":
            clip = float(p["clip"].reshape(-1)[0])
            s = clip / (2 ** a["bits"] - 1)
            y = np.rint(np.minimum(np.maximum(v, 0), clip) / s) * s
        elif op == "maxpool2d":
            y = _pool(v, a, "max")
        elif op == "avgpool2d":
            y = _pool(v, a, "avg")
        elif op == "global_avgpool":
            y = v.mean(axis=(2, 3), keepdims=True)
        elif op == "add":
            y = ins[0] + ins[1]
        elif op == "concat":
            y = np.concatenate(ins, axis=1)
        elif op == "flatten":
            y = v.reshape(v.shape[0], -1)
        elif op == "log_softmax":
            m = v.max(axis=1, keepdims=True)
            y = v - m - np.log(np.exp(v - m).sum(axis=1, keepdims=True))
        else:
            raise NotImplementedError(op)
        env[node["name"]] = y
    return env[graph["output"]]
