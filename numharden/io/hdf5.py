"""save_model / load_model: the HDF5 model format v1 (docs/FORMAT.md)."""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from .. import config
from ..errors import ConfigError, FormatError, MissingTensorError, NumhardenError, ShapeError
from ..graph import Graph, Model
from ..graph.graph import Node, param_shapes
from . import schema
from .tensors import check_stored, digest, read_tensor, write_tensor

FORMAT_NAME = "numharden-model"
FORMAT_VERSION = 1


# -- built-in models ------------------------------------------------------------------------
def _weights_module():
    """The ``numharden_weights`` package, or the ``weights/`` folder of a source checkout."""
    try:
        import numharden_weights
        return numharden_weights
    except ImportError:
        init = config.package_dir().parent / "weights" / "__init__.py"
        if not init.is_file():
            return None
        mod = sys.modules.get("_numharden_weights_checkout")
        if mod is None:
            spec = importlib.util.spec_from_file_location("_numharden_weights_checkout", init)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            sys.modules["_numharden_weights_checkout"] = mod
        return mod


def builtin_names() -> list[str]:
    """Names of the built-in models (``load_model`` accepts them instead of a path)."""
    mod = _weights_module()
    return [] if mod is None else list(mod.names())


def resolve_model_path(spec: str | os.PathLike) -> Path:
    """Path of a model file given as a path or a built-in model name.

    Raises
    ------
    ConfigError
        If ``spec`` is neither an existing file nor a built-in name (the message lists the
        built-in names).
    """
    path = Path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"model {str(spec)!r} is a directory; give the path of a .h5 model "
                          "file or a built-in model name")
    names = builtin_names()
    if isinstance(spec, str) and spec in names:
        return Path(_weights_module().path(spec))
    listed = ", ".join(names) if names else "none installed"
    raise ConfigError(f"model {str(spec)!r}: no such file and not a built-in model name; "
                      f"built-in models: {listed}. Give a path to a .h5 model file")


# -- saving -----------------------------------------------------------------------------------
def _json_default(obj):
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _dumps(obj, what: str, where: str) -> str:
    try:
        return json.dumps(obj, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {what} cannot be stored as JSON ({exc}); use plain "
                          "str/int/float/bool/list/dict values, finite numbers only") from None


def _umask() -> int:
    try:  # reading it from /proc avoids os.umask's set-and-restore race
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def save_model(model: Model, path: str | os.PathLike, *, faulted: bool = False) -> Path:
    """Write ``model`` to ``path`` in format v1, atomically.

    The file is written to a temporary file in the same folder, flushed and fsynced, then
    renamed over ``path``, so readers see either the old file or the complete new one.
    Every check :func:`load_model` applies is applied first, so a saved file always loads.
    ``model.meta`` is stored as JSON: NumPy scalars and arrays become numbers and lists,
    tuples become lists; NaN/Inf and other objects are refused.

    Parameters
    ----------
    model : Model
    path : str or PathLike
    faulted : bool, keyword-only
        The model holds injected faults (used by
        :func:`numharden.faults.faulted.save_faulted`, which adds the ``/faults`` group):
        NaN/Inf float codes and non-positive or non-finite activation clips are then
        legitimate (docs/FORMAT.md section 8) and are written as they are.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    where = f"saving model to {str(path)!r}"
    if not isinstance(model, Model):
        raise ConfigError(f"{where}: expected a numharden Model, found {type(model).__name__}")
    if not path.parent.is_dir():
        raise ConfigError(f"{where}: folder {str(path.parent)!r} does not exist; create it first")
    graph_text = _dumps(model.graph.to_dict(), "the graph", where)
    meta_text = _dumps(model.meta, "model.meta", where)
    shapes = {n: tuple(t.shape) for n, t in model.params.items()}
    graph = _check_contents(json.loads(graph_text), json.loads(meta_text), shapes, where)
    for name, st in model.params.items():
        check_stored(name, st, where, faulted=faulted)
    _check_semantics(graph, model.params, where, faulted=faulted)
    entries = [(n, st.fmt.spec, st.axis if st.fmt.per_channel else None, st.codes,
                st.scale if st.fmt.kind in ("int", "affine") else None,
                st.zero_point if st.fmt.kind == "affine" else None, st.protect)
               for n, st in model.params.items()]
    sha = digest(graph_text.encode(), meta_text.encode(), entries)

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["sha256"] = sha
            f.create_dataset("graph", data=graph_text, dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("meta", data=meta_text, dtype=h5py.string_dtype("utf-8"))
            params = f.create_group("params")
            for name in sorted(model.params):
                write_tensor(params, name, model.params[name])
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def _check_contents(graph_dict, meta, params: dict, where: str) -> Graph:
    """Schema, graph and meta checks shared by save and load; returns the Graph.

    ``params`` maps each stored parameter name to its shape (None where unknown). Each
    node's references and its attributes against its own parameters are checked before
    the graph's shapes are propagated, so an error names the node at fault, not a
    downstream one.
    """
    schema.check_graph_dict(graph_dict, where)
    used = {p for n in graph_dict["nodes"] for p in (n.get("params") or {}).values()}
    orphans = [str(p) for p in params if p not in used]
    for node in graph_dict["nodes"]:
        _check_node_params(node, params, orphans, where)
    try:
        graph = Graph.from_dict(graph_dict)
    except NumhardenError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    used = {p for node in graph.nodes for p in node.params.values()}
    unused = sorted(set(params) - used)
    if unused:
        raise FormatError(f"{where}: parameter(s) {unused[:5]} are not used by any node; remove "
                          "them or reference them from a node's params")
    out = graph.shapes[graph.output]
    schema.check_meta(meta, graph.input_shape[0], out[0] if len(out) == 1 else None, where)
    return graph


def _check_node_params(d: dict, params: dict, orphans: list, where: str) -> None:
    """One node's parameter references exist (suggesting a stored parameter no node uses
    when its name is close), and its attributes imply their shapes."""
    name, op = d.get("name"), d.get("op")
    refs = d.get("params") or {}
    for role, pname in refs.items():
        if pname not in params:
            close = difflib.get_close_matches(str(pname), orphans, n=1)
            hint = (f"did you mean {close[0]!r} (stored, but no node uses it)?" if close else
                    "write it (docs/FORMAT.md section 5) or fix the node's params")
            raise MissingTensorError(f"{where}: parameter {pname!r} ({op} {role} of node "
                                     f"{name!r}) is missing: no group /params/{pname}; {hint}")
    try:
        node = Node(name, op, list(d.get("inputs", [])), dict(d.get("attrs", {})), dict(refs))
        want = param_shapes(node)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return  # malformed attributes: the graph check reports them
    for role, pname in refs.items():
        got = params[pname]
        if role in want and got is not None and tuple(got) != tuple(want[role]):
            keys = [k for k in ("in_channels", "out_channels", "groups", "kernel", "in_features",
                                "out_features", "num_features") if k in node.attrs]
            attrs = ", ".join(f"{k}={node.attrs[k]}" for k in keys)
            raise ShapeError(f"{where}: node {name!r} ({op}) has {attrs}, which needs its {role} "
                             f"{pname!r} of shape {tuple(want[role])}, but that tensor has shape "
                             f"{tuple(got)}; fix the node's attributes or the tensor")


def _stored_shapes(group) -> dict:
    """Parameter name -> shape of its codes dataset, without reading it (None if unknown)."""
    out = {}
    for name, g in group.items():
        codes = g.get("codes") if isinstance(g, h5py.Group) else None
        out[name] = codes.shape if isinstance(codes, h5py.Dataset) else None
    return out


_SHA = re.compile(r"[0-9a-fA-F]{64}")


# -- loading ----------------------------------------------------------------------------------
def _text(f, name: str, where: str) -> bytes:
    if name not in f:
        raise MissingTensorError(f"{where}: dataset /{name} is missing; it holds the {name} "
                                 "as JSON text (docs/FORMAT.md section 2)")
    ds = f[name]
    if not isinstance(ds, h5py.Dataset) or ds.shape != () or h5py.check_string_dtype(
            ds.dtype) is None:
        raise FormatError(f"{where}: /{name} must be a scalar string dataset of JSON text, "
                          f"found {'a group' if isinstance(ds, h5py.Group) else ds.dtype}"
                          f"{'' if isinstance(ds, h5py.Group) else f' shape {ds.shape}'}")
    value = ds[()]
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _parse(text: bytes, name: str, where: str):
    try:
        return json.loads(text.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{where}: /{name} is not valid JSON ({exc}); "
                          "see docs/FORMAT.md") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not allowed in JSON (RFC 8259)")


def _check_header(f, where: str) -> None:
    fmt = f.attrs.get("format")
    fmt = fmt.decode("utf-8", "replace") if isinstance(fmt, bytes) else fmt
    if fmt != FORMAT_NAME:
        raise FormatError(f"{where}: root attribute 'format' must be {FORMAT_NAME!r}, found "
                          f"{fmt!r}; this HDF5 file is not a numharden model (docs/FORMAT.md)")
    ver = np.asarray(f.attrs.get("format_version", None))
    if ver.shape != () or ver.dtype.kind not in "iu":
        raise FormatError(f"{where}: root attribute 'format_version' must be an integer, found "
                          f"{f.attrs.get('format_version')!r}")
    ver = int(ver)
    if ver > FORMAT_VERSION:
        raise FormatError(f"{where} was written by a newer numharden: format_version {ver} > "
                          f"{FORMAT_VERSION}, the newest this version reads; upgrade numharden")
    if ver < 1:
        raise FormatError(f"{where}: format_version {ver} is not valid (versions start at 1)")


def _read_all(f, where: str) -> Model:
    _check_header(f, where)
    graph_text, meta_text = _text(f, "graph", where), _text(f, "meta", where)
    graph_dict, meta = _parse(graph_text, "graph", where), _parse(meta_text, "meta", where)
    if "params" not in f:
        raise MissingTensorError(f"{where}: group /params is missing (docs/FORMAT.md section 5)")
    group = f["params"]
    if not isinstance(group, h5py.Group):
        raise FormatError(f"{where}: /params must be a group, found a dataset")
    graph = _check_contents(graph_dict, meta, _stored_shapes(group), where)
    faulted = "faults" in f  # a faulted model file (FORMAT.md section 8)
    params, entries = {}, []
    for node in graph.nodes:
        for role, pname in node.params.items():
            if pname in params:
                continue
            if pname not in group:
                raise MissingTensorError(
                    f"{where}: parameter {pname!r} ({node.op} {role} of node {node.name!r}) is "
                    f"missing: no group /params/{pname}")
            params[pname], entry = read_tensor(h5py, group, pname, where, faulted=faulted)
            entries.append(entry)
    try:
        graph.check_params(params)
    except NumhardenError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    _check_semantics(graph, params, where, faulted=faulted)
    stored = f.attrs.get("sha256")
    if stored is not None:
        stored = stored.decode("utf-8", "replace") if isinstance(stored, bytes) else str(stored)
        if not _SHA.fullmatch(stored):
            raise FormatError(f"{where}: root attribute 'sha256' must be 64 hexadecimal digits, "
                              f"found {stored[:70]!r}: it is malformed, not a checksum of other "
                              "content; write it as docs/FORMAT.md section 7 describes, or "
                              "delete the attribute (it is optional)")
        actual = digest(graph_text, meta_text, entries)
        if stored.lower() != actual:
            raise FormatError(f"{where}: content checksum mismatch (sha256 attribute {stored[:12]}"
                              f"..., content {actual[:12]}...); the file was corrupted after "
                              "it was written - restore it from a copy")
    return Model(graph, params, meta)


def _check_semantics(graph: Graph, params: dict, where: str, faulted: bool = False) -> None:
    """Value constraints that involve a node: act_quant clip > 0, running_var >= 0
    (neither in a faulted model, where a fault may have hit them)."""
    for node in graph.nodes:
        if node.op == "act_quant" and not faulted:
            clip = params[node.params["clip"]].decode()
            if not (np.isfinite(clip).all() and (clip > 0).all()):
                raise FormatError(f"{where}: act_quant node {node.name!r}: clip "
                                  f"{node.params['clip']!r} must be finite and > 0, found "
                                  f"{clip.tolist()}")
        if node.op == "batchnorm" and not faulted:
            var = params[node.params["running_var"]].decode()
            if (var < 0).any():
                raise FormatError(f"{where}: batchnorm node {node.name!r}: running_var must be "
                                  f">= 0, found minimum {float(var.min())}")


def load_model(spec: str | os.PathLike) -> Model:
    """Load a model file written in format v1, or a built-in model by name.

    Parameters
    ----------
    spec : str or PathLike
        Path of a ``.h5`` model file, or a built-in model name
        (:func:`builtin_names`, e.g. ``'lenet5-fmnist-w4a4'``).

    Returns
    -------
    Model
        Parameters as stored (StoredTensor codes, scales), graph and meta.

    Raises
    ------
    FormatError, MissingTensorError, ShapeError, DTypeError
        The file is not a valid v1 model (the message names the file and the tensor or
        node; see docs/FORMAT.md section 11).
    ConfigError
        ``spec`` is neither a file nor a built-in name.
    """
    path = resolve_model_path(spec)
    where = f"model file {str(path)!r}"
    if not h5py.is_hdf5(path):
        raise FormatError(f"{where} is not an HDF5 file (no HDF5 signature); give a numharden "
                          ".h5 model file (docs/FORMAT.md)")
    try:
        with h5py.File(path, "r") as f:
            return _read_all(f, where)
    except NumhardenError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        # h5py raises these for truncated or damaged files
        raise FormatError(f"{where} is truncated or corrupt: HDF5 reports {exc}; restore the "
                          "file from a copy or save the model again") from exc


def content_sha256(f: h5py.File) -> str:
    """Content checksum (docs/FORMAT.md section 7) of an open model file, lowercase hex.

    Reads the stored bytes as they are (it does not validate the model); a file without
    ``/graph``, ``/meta`` or ``/params``, or a parameter group without ``codes`` or
    ``format``, raises MissingTensorError/FormatError.
    """
    where = f"model file {f.filename!r}"
    if "params" not in f:
        raise MissingTensorError(f"{where}: group /params is missing (docs/FORMAT.md section 5)")
    entries = []
    for name in f["params"]:
        g = f["params"][name]
        spec = g.attrs.get("format")
        spec = spec.decode("utf-8") if isinstance(spec, bytes) else spec
        if not isinstance(spec, str) or "codes" not in g:
            raise FormatError(f"{where}: parameter {name!r} needs a string attribute 'format' "
                              "and a dataset 'codes' to be checksummed")
        arrays = [np.asarray(g[m][()]) if m in g else None for m in ("codes", "scale", "zero_point", "protect")]
        axis = int(g.attrs["axis"]) if "axis" in g.attrs else None
        entries.append((name, spec, axis, *arrays))
    return digest(_text(f, "graph", where), _text(f, "meta", where), entries)
