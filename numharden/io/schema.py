"""Structural checks of the ``/graph`` and ``/meta`` JSON of a model file (docs/FORMAT.md
sections 4 and 6): keys, op attributes with their types and ranges, known meta keys.

Node inputs, parameter roles and shapes are checked by :class:`numharden.graph.Graph`;
this module checks what must hold before a Graph can even be built, so that a third-party
file fails with a message naming the node and attribute instead of a KeyError.
"""

from __future__ import annotations

import math

from ..errors import FormatError


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _ints(n: int, lo: int):
    def check(v):
        return isinstance(v, list) and len(v) == n and all(_int(e) and e >= lo for e in v)
    return check, f"a list of {n} integers >= {lo}"


_POS_INT = (lambda v: _int(v) and v >= 1, "an integer >= 1")
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_NUM = (_num, "a finite number")
_PAIR = _ints(2, 1)
_PAD = _ints(4, 0)

# op -> attribute -> (check, description); every listed attribute is required
OP_ATTRS: dict[str, dict[str, tuple]] = {
    "conv2d": {"in_channels": _POS_INT, "out_channels": _POS_INT, "kernel": _PAIR,
               "stride": _PAIR, "padding": _PAD, "dilation": _PAIR, "groups": _POS_INT},
    "linear": {"in_features": _POS_INT, "out_features": _POS_INT},
    "batchnorm": {"num_features": _POS_INT,
                  "eps": (lambda v: _num(v) and v > 0, "a finite number > 0"),
                  "momentum": (lambda v: _num(v) and 0 <= v <= 1, "a number in [0, 1]")},
    "relu": {},
    "relu6": {},
    "hardtanh": {"min_val": _NUM, "max_val": _NUM},
    "maxpool2d": {"kernel": _PAIR, "stride": _PAIR, "padding": _PAD, "dilation": _PAIR,
                  "ceil_mode": _BOOL},
    "avgpool2d": {"kernel": _PAIR, "stride": _PAIR, "padding": _PAD, "ceil_mode": _BOOL,
                  "count_include_pad": _BOOL},
    "global_avgpool": {},
    "add": {},
    "concat": {},
    "flatten": {},
    "subsample_pad": {"stride": _PAIR, "pad_channels": _ints(2, 0)},
    "act_quant": {"bits": (lambda v: _int(v) and 1 <= v <= 16, "an integer in [1, 16]")},
    "log_softmax": {},
}
OPTIONAL_ATTRS = {("batchnorm", "momentum")}
GRAPH_KEYS = ("input_shape", "output", "nodes")
NODE_KEYS = ("name", "op", "inputs", "attrs", "params")


def check_graph_dict(d, where: str) -> None:
    """Raise FormatError unless ``d`` is a well-formed ``/graph`` object.

    Parameters
    ----------
    d : object
        Parsed JSON of ``/graph``.
    where : str
        Prefix naming the file, e.g. ``"model file 'a.h5'"``.
    """
    fix = "see docs/FORMAT.md section 4"
    if not isinstance(d, dict):
        raise FormatError(f"{where}: /graph must be a JSON object, found {type(d).__name__}; {fix}")
    _exact_keys(d, GRAPH_KEYS, (), f"{where}: /graph", fix)
    shape = d["input_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_int(v) and v >= 1 for v in shape)):
        raise FormatError(f"{where}: /graph input_shape must be [C, H, W] with integers >= 1, "
                          f"found {shape!r}; {fix}")
    if not isinstance(d["output"], str):
        raise FormatError(f"{where}: /graph output must be a node name (string), found "
                          f"{d['output']!r}; {fix}")
    if not isinstance(d["nodes"], list) or not d["nodes"]:
        raise FormatError(f"{where}: /graph nodes must be a non-empty list, found "
                          f"{type(d['nodes']).__name__}; {fix}")
    for i, node in enumerate(d["nodes"]):
        check_node_dict(node, i, where)


def check_node_dict(node, index: int, where: str) -> None:
    """Raise FormatError unless ``node`` (entry ``index`` of /graph nodes) is well-formed."""
    fix = "see docs/FORMAT.md section 4.1"
    if not isinstance(node, dict):
        raise FormatError(f"{where}: /graph node #{index} must be a JSON object, found "
                          f"{type(node).__name__}")
    label = f"{where}: node #{index}"
    if isinstance(node.get("name"), str):
        label = f"{where}: node {node['name']!r}"
    _exact_keys(node, NODE_KEYS, (), label, fix)
    name, op, inputs, attrs, params = (node[k] for k in NODE_KEYS)
    if not isinstance(name, str) or not name:
        raise FormatError(f"{label}: name must be a non-empty string, found {name!r}")
    if op not in OP_ATTRS:
        raise FormatError(f"{label} has unknown op {op!r}; known ops: "
                          f"{', '.join(sorted(OP_ATTRS))}. A newer numharden may support it")
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise FormatError(f"{label}: inputs must be a list of node names, found {inputs!r}")
    if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
        raise FormatError(f"{label}: params must map role strings to parameter names, "
                          f"found {params!r}")
    if not isinstance(attrs, dict):
        raise FormatError(f"{label}: attrs must be a JSON object, found {type(attrs).__name__}")
    spec = OP_ATTRS[op]
    optional = tuple(a for a in spec if (op, a) in OPTIONAL_ATTRS)
    _exact_keys(attrs, tuple(a for a in spec if a not in optional), optional,
                f"{label} ({op}) attrs", fix)
    for key, value in attrs.items():
        check, want = spec[key]
        if not check(value):
            raise FormatError(f"{label} ({op}): attribute {key!r} must be {want}, found "
                              f"{value!r}; {fix}")
    _check_cross(op, attrs, label)


def _check_cross(op: str, a: dict, label: str) -> None:
    if op == "conv2d" and (a["in_channels"] % a["groups"] or a["out_channels"] % a["groups"]):
        raise FormatError(f"{label} (conv2d): groups={a['groups']} must divide in_channels="
                          f"{a['in_channels']} and out_channels={a['out_channels']}")
    if op == "hardtanh" and not a["min_val"] < a["max_val"]:
        raise FormatError(f"{label} (hardtanh): min_val={a['min_val']} must be below "
                          f"max_val={a['max_val']}")
    if op in ("maxpool2d", "avgpool2d"):
        (kh, kw), (pt, pb, pl, pr) = a["kernel"], a["padding"]
        if max(pt, pb) > kh // 2 or max(pl, pr) > kw // 2:
            raise FormatError(f"{label} ({op}): padding {a['padding']} exceeds half the "
                              f"kernel {a['kernel']} (PyTorch's limit); reduce the padding")


def _exact_keys(d: dict, required, optional, label: str, fix: str) -> None:
    missing = [k for k in required if k not in d]
    extra = sorted(k for k in d if k not in required and k not in optional)
    if missing or extra:
        allowed = list(required) + [f"{k} (optional)" for k in optional]
        raise FormatError(f"{label}: missing keys {missing}, unknown keys {extra}; expected "
                          f"{allowed or 'no keys'}; {fix}")


def check_meta(meta, input_channels: int, num_outputs: int | None, where: str) -> None:
    """Raise FormatError if ``meta`` is not an object or a known key is inconsistent.

    Parameters
    ----------
    meta : object
        Parsed JSON of ``/meta``.
    input_channels : int
        C of the graph input (normalisation vectors have length C or 1).
    num_outputs : int or None
        K of a flat ``(K,)`` output (length of ``class_names``); None skips that check.
    where : str
        Prefix naming the file.
    """
    fix = "see docs/FORMAT.md section 6"
    if not isinstance(meta, dict):
        raise FormatError(f"{where}: /meta must be a JSON object, found {type(meta).__name__}")
    norm = meta.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict) or set(norm) != {"mean", "std"}:
            raise FormatError(f"{where}: meta normalization must be {{'mean': [...], 'std': "
                              f"[...]}}, found {norm!r}; {fix}")
        for key in ("mean", "std"):
            v = norm[key]
            if not (isinstance(v, list) and len(v) in (1, input_channels) and all(map(_num, v))):
                want = ("one finite number (the input has one channel)" if input_channels == 1
                        else f"1 finite number (shared by all channels) or {input_channels} "
                             "(one per input channel)")
                raise FormatError(f"{where}: meta normalization {key} must list {want}, found "
                                  f"{v!r}; {fix}")
        if not all(s > 0 for s in norm["std"]):
            raise FormatError(f"{where}: meta normalization std must be > 0, found "
                              f"{norm['std']!r}")
    names = meta.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise FormatError(f"{where}: meta class_names must be a list of strings, found "
                              f"{names!r}; {fix}")
        if num_outputs is not None and len(names) != num_outputs:
            raise FormatError(f"{where}: meta class_names lists {len(names)} names but the "
                              f"network has {num_outputs} outputs; give one name per output")
    if "arch" in meta and not isinstance(meta["arch"], str):
        raise FormatError(f"{where}: meta arch must be a string, found {meta['arch']!r}")
    if "training" in meta and not isinstance(meta["training"], dict):
        raise FormatError(f"{where}: meta training must be a JSON object, found "
                          f"{type(meta['training']).__name__}")
