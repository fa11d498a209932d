"""A model: graph + stored parameters + metadata, with a cached inference plan.

Parameters stay in their storage form (:class:`StoredTensor`: integer codes or IEEE
bits plus scales) because that is what hardware holds and what faults hit. Inference
derives float weights from them -- decoding, folding batch norm into the preceding
convolution, transposing to the kernels' HWIO layout -- and caches the result per node.
The cache is keyed by the stored tensors' versions, so after a fault (which bumps the
version of the tensor it hit) only the touched layers are re-derived, and the folded
weights are always derived *after* the faults, never injected into a folded copy.
"""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np

from ..errors import DTypeError, MissingTensorError, ShapeError
from .executor import reads_input, run
from .graph import Graph, Node


class Model:
    """A quantized network in storage form.

    Parameters
    ----------
    graph : Graph
    params : dict of str to StoredTensor
        Keyed by dotted parameter name (PyTorch ``state_dict`` keys).
    meta : dict
        ``normalization`` ({'mean': [...], 'std': [...]} per input channel),
        ``class_names``, ``arch``, ``training`` (recipe and results), free-form extras.
    """

    def __init__(self, graph: Graph, params: dict, meta: dict | None = None):
        graph.check_params(params)
        self.graph = graph
        self.params = params
        self.meta = dict(meta or {})
        self._cache: dict = {}
        self._folds = self._find_folds()

    # -- batch-norm folding ------------------------------------------------------------
    def _find_folds(self) -> dict[str, Node]:
        """conv name -> batchnorm node for every conv whose only reader is a batch norm."""
        folds = {}
        for node in self.graph.nodes:
            if node.op != "batchnorm":
                continue
            src = self.graph[node.inputs[0]] if node.inputs[0] in self.graph.by_name else None
            if (src is not None and src.op == "conv2d" and src.name != self.graph.output
                    and self.graph.consumers[src.name] == [node.name]):
                folds[src.name] = node
        return folds

    def _derive(self, node: Node, dtype, fold: bool) -> dict:
        """Executor-layout arrays for ``node``, recomputed only when a source changed."""
        names = list(node.params.values())
        bn = self._folds.get(node.name) if fold else None
        if bn is not None:
            names += list(bn.params.values())
        key = (node.name, np.dtype(dtype).str, fold)
        # the stamp holds the tensors themselves (not their ids, which Python may reuse
        # once a replaced tensor is freed) and their versions
        stamp = tuple((self.params[n], self.params[n].version) for n in names)
        hit = self._cache.get(key)
        if hit is not None and len(hit[0]) == len(stamp) and all(
                a is b and va == vb for (a, va), (b, vb) in zip(hit[0], stamp)):
            return hit[1]
        with np.errstate(all="ignore"):  # faulted storage may decode to Inf/NaN
            value = self._compute(node, dtype, bn)
        self._cache[key] = (stamp, value)
        return value

    def _compute(self, node: Node, dtype, bn: Node | None) -> dict:
        p = {role: self.params[name].decode() for role, name in node.params.items()}
        if node.op == "conv2d":
            w = p["weight"].astype(np.float64)
            b = p["bias"].astype(np.float64) if "bias" in p else None
            if bn is not None:
                a, c = _bn_affine(self, bn)
                w = w * a[:, None, None, None]
                b = c if b is None else b * a + c
            return {"weight": np.ascontiguousarray(w.transpose(2, 3, 1, 0), dtype=dtype),
                    **({} if b is None else {"bias": b.astype(dtype)})}
        if node.op == "linear":
            return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in p.items()}
        if node.op == "batchnorm":
            a, c = _bn_affine(self, node)
            return {"a": a.astype(dtype), "c": c.astype(dtype)}
        if node.op == "act_quant":
            return {"clip": np.asarray(p["clip"], dtype=dtype)}
        return {}

    # -- inference -----------------------------------------------------------------------
    def forward(self, x, *, dtype=np.float32, hook=None, observe=None, fold_bn: bool = True,
                reuse=None):
        """Logits for the normalised batch ``x``.

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W), float
            Normalised input (see :meth:`normalize`).
        dtype : {float32, float64}
            Arithmetic precision; float64 is for numerical checks.
        hook : callable, optional
            Activation-fault hook ``hook(node, out, fmt)`` (see executor).
        observe : callable, optional
            ``observe(node, out)`` for every node output (NHWC arrays).
        fold_bn : bool
            Fold batch norm into convolutions (default) or apply it separately.
        reuse : (outputs, touched), optional
            Incremental re-evaluation after a few parameters changed (fault campaigns):
            ``outputs`` maps node names to their outputs on this very ``x`` (same
            ``dtype``, ``fold_bn``) before the change -- e.g. recorded by ``observe`` --
            and ``touched`` lists the names of the parameters changed since. Only the
            nodes downstream of a touched parameter are recomputed, starting from the
            recorded outputs; the result equals a full forward. Not with ``hook``.

        Returns
        -------
        ndarray, shape (N, K), dtype ``dtype``
        """
        folded = frozenset(bn.name for bn in self._folds.values()) if fold_bn else frozenset()
        if reuse is not None:
            outputs, touched = reuse
            reuse = (outputs, self.nodes_of(touched, fold_bn))
        if reuse is not None and hook is None and observe is None and not reads_input(
                self.graph, folded, reuse[1], outputs):
            self._check_input(x, finite=False)  # the recorded batch: checked when recorded
            xh = None  # the recomputed nodes start from recorded outputs only
        else:
            x = self._check_input(x)
            xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=dtype)
        with np.errstate(all="ignore"):  # faults may legitimately overflow; callers count it
            out = run(self.graph, xh, lambda node: self._derive(node, dtype, fold_bn),
                      folded=folded, hook=hook, observe=observe, fuse=True, reuse=reuse)
        return out.reshape(out.shape[0], -1)

    def nodes_of(self, params, fold_bn: bool = True) -> set[str]:
        """Names of the nodes whose computation reads the given parameters (a folded
        batch norm's parameters belong to its convolution)."""
        owner = {}
        for node in self.graph.nodes:
            for name in node.params.values():
                owner[name] = node.name
        if fold_bn:
            for conv, bn in self._folds.items():
                for name in bn.params.values():
                    owner[name] = conv
        unknown = [p for p in params if p not in owner]
        if unknown:
            raise MissingTensorError(f"{unknown[0]!r} is not a parameter of this model; parameters "
                           f"are e.g. {sorted(owner)[:4]}")
        return {owner[p] for p in params}

    def _check_input(self, x, finite: bool = True) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            raise DTypeError(f"model input must be a float ndarray (N, C, H, W); got "
                             f"{type(x).__name__} of dtype {getattr(x, 'dtype', None)}. "
                             "Use Model.normalize(images) to convert raw images")
        want = self.graph.input_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ShapeError(f"model input has shape {x.shape}, expected (N, {want[0]}, "
                             f"{want[1]}, {want[2]}) for this model")
        if finite and not np.isfinite(x).all():
            raise ValueError("model input contains NaN or Inf values; check the data "
                             "file or the normalisation")
        return x

    def normalize(self, images) -> np.ndarray:
        """Raw images (uint8 scaled by 1/255, or float as given) to normalised float32 NCHW."""
        x = np.asarray(images)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        if x.ndim == 3:
            x = x[:, None]
        norm = self.meta.get("normalization") or {}
        mean = np.asarray(norm.get("mean", [0.0]), np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(norm.get("std", [1.0]), np.float32).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def predict(self, images, batch_size: int | None = None, **kw) -> np.ndarray:
        """Top-1 class for raw images, in batches; extra keywords go to :meth:`forward`."""
        return np.concatenate([self.forward(self.normalize(chunk), **kw).argmax(1)
                               for chunk in _chunks(images, batch_size)])

    # -- bookkeeping ---------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.graph.num_classes

    def copy(self) -> "Model":
        """Deep copy of the parameters (the graph is shared: it is never mutated)."""
        return Model(self.graph, {k: v.copy() for k, v in self.params.items()},
                     copy.deepcopy(self.meta))

    def checksum(self) -> str:
        """SHA-256 of the graph and every stored tensor (codes, scales, formats)."""
        h = hashlib.sha256(json.dumps(self.graph.to_dict(), sort_keys=True).encode())
        for name in sorted(self.params):
            st = self.params[name]
            h.update(f"{name}|{st.fmt.spec}|{st.axis}|{st.codes.shape}".encode())
            for arr in (st.codes, st.scale, st.zero_point):
                if arr is not None:
                    h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    def float_params(self) -> dict[str, np.ndarray]:
        """Decoded float32 copy of every parameter (PyTorch layouts)."""
        return {k: v.decode() for k, v in self.params.items()}


def _bn_affine(model: Model, bn: Node):
    """Batch norm as y = a x + c (float64): a = gamma / sqrt(var + eps), c = beta - mean a."""
    g = {r: model.params[n].decode().astype(np.float64) for r, n in bn.params.items()}
    a = g["weight"] / np.sqrt(g["running_var"] + bn.attrs["eps"])
    return a, g["bias"] - g["running_mean"] * a


def _chunks(x, batch_size):
    from .. import config
    bs = int(batch_size or config.get("batch_size"))
    return (x[i:i + bs] for i in range(0, len(x), bs))
