"""Quantization-aware training state of a Model: latent float parameters and BN buffers.

A :class:`Trainable` holds a float latent Tensor (PyTorch layout) for every learnable
parameter of a :class:`~numharden.graph.Model` -- conv / linear weights and biases,
batch-norm ``weight`` / ``bias`` and activation-quantiser clips -- plus the batch-norm
running statistics as plain arrays. Its forward runs the model's graph through
:func:`numharden.graph.executor.run`, the one forward path of numharden (house rule 1);
only the parameter provider differs from inference:

* conv ``weight``: ``F.permute(F.fake_quant_weight(latent, fmt, axis), (2, 3, 1, 0))``,
  i.e. quantise-dequantise to the weight's target storage format (straight-through
  gradient) and transpose OIHW -> HWIO;
* linear ``weight``: ``F.fake_quant_weight(latent, fmt, axis)``;
* conv / linear ``bias``: the latent, fake-quantised too if its format is not fp32;
* batch norm, training: ``weight`` and ``bias`` (the executor uses batch statistics and
  reports them; running statistics are updated as PyTorch does, the variance with the
  unbiased batch variance); evaluation: ``a = gamma / sqrt(running_var + eps)`` and
  ``c = beta - running_mean * a`` built with F ops, so gradients still reach gamma, beta;
* act_quant ``clip``: the latent Tensor of shape (1,) (PACT: the clip is learned).

:meth:`Trainable.to_model` encodes the latent weights in their target formats and
stores batch-norm parameters, running statistics and clips as fp32.
"""

from __future__ import annotations

import copy

import numpy as np

from ..autograd import Tensor, functional as F, no_grad
from ..autograd.tensor import data_of
from ..errors import ConfigError, DTypeError, ShapeError
from ..formats import parse_format
from ..graph import INPUT, Model
from ..graph.executor import run

_FP32 = parse_format("fp32")
# parameter kind of each (op, role); batch-norm running statistics are buffers
_KIND = {("conv2d", "weight"): "weight", ("conv2d", "bias"): "bias",
         ("linear", "weight"): "weight", ("linear", "bias"): "bias",
         ("batchnorm", "weight"): "bn", ("batchnorm", "bias"): "bn",
         ("act_quant", "clip"): "clip"}
_BUFFERS = ("running_mean", "running_var")


class Trainable:
    """Latent float parameters of a Model for quantization-aware training.

    Parameters
    ----------
    model : Model
        Source model (e.g. :func:`numharden.models.zoo.build` output); latents start
        from its decoded parameters. The model is not modified.
    weight_format : str or Format, optional
        Target format of every conv / linear weight, overriding the formats stored
        in ``model`` (e.g. start from an fp32 model, train for ``'int4/ch'``).
        Per-channel formats use axis 0 (output channels).
    dtype : {float32, float64}
        Precision of latents and arithmetic; float64 is for gradient checks.

    Attributes
    ----------
    graph : Graph
    params : dict of str to Tensor
        Learnable latents, PyTorch layouts, ``requires_grad=True``.
    buffers : dict of str to ndarray
        Batch-norm running statistics (updated in place in training mode).
    formats : dict of str to Format
        Target storage format of every parameter and buffer.
    axes : dict of str to int or None
        Channel axis of per-channel formats.
    kinds : dict of str to str
        ``'weight'``, ``'bias'``, ``'bn'`` or ``'clip'`` for every learnable parameter
        (optimizers exempt kinds from weight decay by it).
    meta : dict
        Copy of the model's metadata, written to the exported model.
    """

    def __init__(self, model: Model, *, weight_format=None, dtype=np.float32):
        if not isinstance(model, Model):
            raise ConfigError(f"Trainable needs a numharden Model, found {type(model).__name__}; "
                              "build one with numharden.models.zoo.build or load_model")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise DTypeError(f"Trainable dtype must be float32 or float64, found {self.dtype}")
        wfmt = None if weight_format is None else parse_format(weight_format)
        self.graph = model.graph
        self.meta = copy.deepcopy(model.meta)
        self.params: dict[str, Tensor] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.formats: dict = {}
        self.axes: dict = {}
        self.kinds: dict[str, str] = {}
        self._extra = {k: v.copy() for k, v in model.params.items()}  # unreferenced tensors
        for node in self.graph.nodes:
            for role, name in node.params.items():
                if name in self.formats:
                    continue
                st = self._extra.pop(name)
                fmt, axis = st.fmt, st.axis
                if wfmt is not None and role == "weight" and node.op in ("conv2d", "linear"):
                    fmt, axis = wfmt, (0 if wfmt.per_channel else None)
                if node.op in ("batchnorm", "act_quant") and fmt.spec != "fp32":
                    raise ConfigError(
                        f"parameter {name!r} ({node.op} {role}) is stored as {fmt.spec}; "
                        "training keeps batch-norm parameters, statistics and clips in fp32. "
                        "Re-encode it as fp32 before training")
                self.formats[name], self.axes[name] = fmt, axis
                value = np.array(st.decode(), dtype=self.dtype)
                if role in _BUFFERS:
                    self.buffers[name] = value
                else:
                    self.kinds[name] = _KIND[(node.op, role)]
                    self.params[name] = Tensor(value, requires_grad=True, name=name)

    # -- parameters ----------------------------------------------------------------------
    # smallest clip a step may leave: act_quant needs clip > 0, so after every update the
    # clips are projected onto [clip_min, inf) (projected gradient descent on PACT's alpha)
    clip_min = 1e-3

    def project(self) -> None:
        """Project parameters onto their domain after an update (clips >= clip_min)."""
        for name, kind in self.kinds.items():
            if kind == "clip":
                np.maximum(self.params[name].data, self.clip_min, out=self.params[name].data)

    def nonfinite(self) -> list[str]:
        """Names of latents holding NaN or Inf (a diverged run)."""
        return [n for n, p in self.params.items() if not np.isfinite(p.data).all()]

    def zero_grad(self) -> None:
        """Forget the gradients of every latent."""
        for p in self.params.values():
            p.grad = None

    def quantized(self, name: str, params: dict | None = None, offsets: dict | None = None):
        """The value the forward uses for parameter ``name``: its latent, fake-quantised
        to the target format unless that is fp32, plus ``offsets[name]`` if given (a
        Tensor while grad mode is on)."""
        p = (params or self.params)[name]
        fmt = self.formats[name]
        v = p if fmt.spec == "fp32" else F.fake_quant_weight(p, fmt, self.axes[name])
        return self._offset(name, v, offsets)

    @staticmethod
    def _offset(name: str, value, offsets: dict | None):
        return F.add(value, offsets[name]) if offsets and name in offsets else value

    def _provider(self, train: bool, params: dict | None, offsets: dict | None):
        P = params or self.params
        if offsets:
            for name, e in offsets.items():
                if name not in self.kinds or self.kinds[name] not in ("weight", "bias", "bn"):
                    raise ConfigError(f"offset for {name!r}: offsets apply to conv / linear "
                                      "weights and biases and batch-norm weight / bias only")
                if np.shape(data_of(e)) != self.params[name].shape:
                    raise ShapeError(f"offset for {name!r} has shape {np.shape(data_of(e))}, "
                                     f"the parameter has {self.params[name].shape}")

        def provide(node):
            names = node.params
            if node.op in ("conv2d", "linear"):
                w = self.quantized(names["weight"], P, offsets)
                out = {"weight": F.permute(w, (2, 3, 1, 0)) if node.op == "conv2d" else w}
                if "bias" in names:
                    out["bias"] = self.quantized(names["bias"], P, offsets)
                return out
            if node.op == "batchnorm":
                gamma, beta = (self._offset(names[r], P[names[r]], offsets)
                               for r in ("weight", "bias"))
                if train:
                    return {"weight": gamma, "bias": beta}
                var = self.buffers[names["running_var"]]
                inv_std = (1.0 / np.sqrt(var + var.dtype.type(node.attrs["eps"]))).astype(var.dtype)
                a = F.mul(gamma, inv_std)
                return {"a": a, "c": F.add(beta, F.mul(a, -self.buffers[names["running_mean"]]))}
            if node.op == "act_quant":
                return {"clip": P[names["clip"]]}
            return {}
        return provide

    def _bn_update(self, node, mean, var, count) -> None:
        """PyTorch's running-statistics update; the variance uses the unbiased batch
        variance ``var * count / (count - 1)``."""
        if count < 2:
            raise ShapeError(f"batch norm {node.name!r} saw {count} value per channel in "
                             "training mode; its unbiased variance is undefined. Use batches "
                             "of at least 2 images (drop_last=True drops a final batch of 1)")
        m = self.dtype.type(node.attrs.get("momentum", 0.1))
        rm = self.buffers[node.params["running_mean"]]
        rv = self.buffers[node.params["running_var"]]
        rm *= 1 - m
        rm += m * mean.astype(self.dtype)
        rv *= 1 - m
        rv += m * (var.astype(np.float64) * (count / (count - 1))).astype(self.dtype)

    # -- forward -------------------------------------------------------------------------
    def forward(self, x, *, train: bool = False, update_stats: bool | None = None,
                params: dict | None = None, offsets: dict | None = None, observe=None):
        """Logits of the normalised batch ``x``.

        Parameters
        ----------
        x : ndarray or Tensor, shape (N, C, H, W), float
            Normalised input (see :meth:`normalize`); an ndarray is cast to ``dtype``,
            a Tensor must have it (gradients then reach the input too).
        train : bool
            Batch norm with batch statistics (training mode) or running statistics.
        update_stats : bool, optional
            Update the running statistics from this batch; default ``train``. A
            second pass over the same batch (SAM-style steps) passes False.
        params : dict of str to Tensor, optional
            Latents to use instead of :attr:`params` (same names; for gradient checks).
        offsets : dict of str to ndarray or Tensor, optional
            Added to the *quantised* values of the named conv / linear weights and biases
            (a perturbation of what hardware stores, as sharpness-aware quantisation
            applies it; gradients still reach the latents through the STE) and to
            batch-norm ``weight`` / ``bias`` (kept in fp32, so there the offset is simply
            added to the latent). An offset Tensor with ``requires_grad`` receives the
            gradient with respect to the quantised value.
        observe : callable, optional
            Executor observer ``observe(node, out)`` (activation penalties, calibration).

        Returns
        -------
        Tensor or ndarray, shape (N, K)
            A Tensor when grad mode is on (the default), an ndarray under ``no_grad``.
        """
        xd = np.asarray(data_of(x))
        want = self.graph.input_shape
        if xd.ndim != 4 or tuple(xd.shape[1:]) != want:
            raise ShapeError(f"Trainable input has shape {xd.shape}, expected (N, {want[0]}, "
                             f"{want[1]}, {want[2]}); pass normalised NCHW images")
        if xd.dtype.kind != "f":
            raise DTypeError(f"Trainable input must be float (normalised), found {xd.dtype}; "
                             "use Trainable.normalize(images)")
        if isinstance(x, Tensor):  # input gradients wanted: keep it in the graph
            if xd.dtype != self.dtype:
                raise DTypeError(f"Trainable input Tensor has dtype {xd.dtype}, the Trainable "
                                 f"computes in {self.dtype}; cast the input")
            xh = F.permute(x, (0, 2, 3, 1))
        else:
            xh = np.ascontiguousarray(xd.transpose(0, 2, 3, 1), dtype=self.dtype)
        update = train if update_stats is None else bool(update_stats)
        out = run(self.graph, xh, self._provider(train, params, offsets), train=train,
                  bn_stats=self._bn_update if (train and update) else None, observe=observe)
        if data_of(out).ndim != 2:
            out = F.reshape(out, (data_of(out).shape[0], -1))
        return out

    def normalize(self, images) -> np.ndarray:
        """Raw images to normalised NCHW in ``dtype``, exactly as :meth:`Model.normalize`
        (uint8 scaled by 1/255, then ``(x - mean) / std`` from ``meta['normalization']``)."""
        x = np.asarray(images)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        if x.ndim == 3:
            x = x[:, None]
        norm = self.meta.get("normalization") or {}
        mean = np.asarray(norm.get("mean", [0.0]), np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(norm.get("std", [1.0]), np.float32).reshape(1, -1, 1, 1)
        return ((x - mean) / std).astype(self.dtype, copy=False)

    # -- activation clips ------------------------------------------------------------------
    def calibrate_clips(self, x, percentile: float = 99.9, *, train: bool = True) -> dict:
        """Set every act_quant clip to a percentile of the activations it receives.

        One forward pass over the normalised batch ``x`` (a few training batches
        concatenated). The clip of each quantiser is set as soon as its input has been
        computed -- the executor calls the observer right after a node runs and asks
        for the next node's parameters only when that node runs -- so every later
        layer is calibrated on activations already quantised with the new clips, as
        training will see them. The percentile runs over all values of the input
        clipped at 0 (post-ReLU zeros included); a quantiser whose input is all zero
        keeps its clip.

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W), float
            Normalised calibration images.
        percentile : float in (0, 100]
        train : bool
            Batch norm with batch statistics (default, as in training) or running ones.
            Running statistics are not updated either way.

        Returns
        -------
        dict of str to float
            The new clip of every act_quant parameter.
        """
        if isinstance(percentile, bool) or not 0.0 < float(percentile) <= 100.0:
            raise ConfigError(f"calibration percentile must lie in (0, 100], found {percentile!r}")
        readers: dict[str, list[str]] = {}
        for node in self.graph.nodes:
            if node.op == "act_quant":
                readers.setdefault(node.inputs[0], []).append(node.params["clip"])
        chosen: dict[str, float] = {}

        def set_clips(src, arr):
            for name in readers.get(src, ()):
                v = float(np.percentile(np.maximum(arr, 0), float(percentile)))
                if v > 0 and np.isfinite(v):
                    self.params[name].data[...] = v
                chosen[name] = float(self.params[name].data.reshape(-1)[0])

        if INPUT in readers:
            set_clips(INPUT, np.asarray(x, dtype=self.dtype))
        with no_grad():
            self.forward(x, train=train, update_stats=False,
                         observe=lambda node, out: set_clips(node.name, data_of(out)))
        return chosen

    # -- export ----------------------------------------------------------------------------
    def to_model(self, meta: dict | None = None) -> Model:
        """Export a Model: weights encoded in their target formats from the latents,
        batch-norm parameters, running statistics and clips as fp32.

        Parameters
        ----------
        meta : dict, optional
            Entries merged over :attr:`meta`.

        Returns
        -------
        Model
            Its inference (BN folded) agrees with :meth:`forward` in evaluation mode up
            to float rounding.
        """
        params = {k: v.copy() for k, v in self._extra.items()}
        for name, fmt in self.formats.items():
            value = self.params[name].data if name in self.params else self.buffers[name]
            value = np.asarray(value, dtype=np.float32)
            params[name] = fmt.encode(value, axis=self.axes[name], name=name)
        return Model(self.graph, params, copy.deepcopy(self.meta) | dict(meta or {}))
