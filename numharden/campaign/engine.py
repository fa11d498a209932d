"""The engine trial: faults in a model's stored tensors (or activations), one test pass.

:class:`FaultSweepSpec` is the campaign spec of ``numharden sweep`` (see the protocol in
:mod:`numharden.campaign`). Each worker builds one :class:`EngineRunner`: it loads the
model and the data once, normalises the images once and remembers the fault-free
predictions. A weight trial then samples faults on the stored codes, applies them in
place (the model re-derives only the layers whose tensors changed, folding batch norm
after the faults), runs the test images, and undoes the faults from the undo log. A
trial whose faults changed no stored bit (none drawn, or all masked) cannot change any
output, so its result is the fault-free one without running the network.

Weight trials recompute only what their faults can reach. The runner records, once,
the fault-free outputs of the nodes that feed parameterised layers (and residual or
concatenation joins), deepest first, within the ``campaign_cache_mb`` budget of
:mod:`numharden.config`; a trial then runs ``Model.forward(reuse=...)`` from the
recorded inputs of the first layer its faults touched. Faults land where the bits are
-- mostly in the large late layers -- so a typical trial costs a fraction of a full
pass; the results are bit-identical to full passes (tests/test_engine.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import config
from ..errors import ConfigError
from ..faults import FaultInjector, FaultModel, activation_fault_hook

TARGETS = ("weights", "activations")
GROUPINGS = (None, "layer", "bit")


@dataclass
class FaultSweepSpec:
    """What a sweep runs, besides the BERs and trial counts (picklable).

    Parameters
    ----------
    model : str
        Model file or built-in name.
    data : str
        Dataset spec for :func:`numharden.data.load_dataset` (test split).
    images : int, optional
        Use only the first ``images`` test images.
    target : {'weights', 'activations'}
    kind, sa1_fraction, mix, per, bits :
        Fault model (see :class:`numharden.faults.FaultModel`); ``rate`` is the BER.
    include, exclude : tuple of str
        Tensor globs (weights) or node globs (activations). Empty ``include`` means the
        default targets: the conv/linear weight tensors, or the activation quantisers'
        outputs (ReLU outputs if the model does not quantise activations).
    group_by : {None, 'layer', 'bit'}
        Breakdown: confine faults to one tensor/node, or to one bit position, per group.
    batch_size : int, optional
    """

    model: str
    data: str = "fashion-mnist"
    images: int | None = None
    target: str = "weights"
    kind: str = "flip"
    sa1_fraction: float | None = None
    mix: tuple | None = None
    per: str = "bit"
    bits: str | None = None
    include: tuple = ()
    exclude: tuple = ()
    group_by: str | None = None
    batch_size: int | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ConfigError(f"--target must be one of {TARGETS}, got {self.target!r}")
        if self.group_by not in GROUPINGS:
            raise ConfigError(f"group_by must be one of {GROUPINGS}, got {self.group_by!r}")
        if self.images is not None and self.images < 1:
            raise ConfigError(f"--images must be at least 1, got {self.images}")
        self.include, self.exclude = tuple(self.include), tuple(self.exclude)
        self.fault_model(0.0)  # validate kind/mix/bits early, with the user's words

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def fault_model(self, ber: float, include=None, bits=None) -> FaultModel:
        return FaultModel(rate=ber, kind=self.kind, sa1_fraction=self.sa1_fraction,
                          mix=self.mix, per=self.per, include=include or ("*",),
                          exclude=self.exclude, bits=bits if bits is not None else self.bits)

    # -- protocol ------------------------------------------------------------------------
    def loaded(self):
        """(model, dataset), loaded once per process."""
        if "model" not in self._cache:
            from ..data import load_dataset
            from ..io import load_model
            model = load_model(self.model)
            data = load_dataset(self.data, split="test")
            if self.images is not None:
                data = data.subset(min(self.images, len(data)))
            data.check_for_model(model.num_classes, model.graph.input_shape, "campaign data")
            self._cache["model"], self._cache["data"] = model, data
        return self._cache["model"], self._cache["data"]

    def describe(self) -> dict:
        _, data = self.loaded()
        d = {k: v for k, v in asdict(self).items() if k not in ("_cache", "model", "data")}
        # the model and the data are identified by content (model checksum, data_sha256);
        # the paths as typed are kept for humans and excluded from the campaign identity
        d["paths"] = {"model": self.model, "data": self.data}
        d["mix"] = list(self.mix) if self.mix else None
        d["include"], d["exclude"] = list(self.include), list(self.exclude)
        h = hashlib.sha256(np.ascontiguousarray(data.images).tobytes())
        h.update(np.ascontiguousarray(data.labels).tobytes())
        d["data_sha256"] = h.hexdigest()
        d["n_images"] = len(data)
        d["targets"] = list(self.targets())
        self._check_bits(d["targets"])
        return d

    def _check_bits(self, targets) -> None:
        """Refuse a --bits filter that a target's format cannot serve, before anything runs."""
        if self.bits is None:
            return
        from ..faults.model import parse_bits
        from ..formats import parse_format
        model, _ = self.loaded()
        for t in targets:
            if self.target == "weights":
                fmt = model.params[t].fmt
            else:
                fmt = parse_format(f"uint{self._bits_of(t)}" if self._bits_of(t) <= 16 else "fp32")
            try:
                parse_bits(self.bits, fmt)
            except ConfigError as e:
                raise ConfigError(f"--bits {self.bits!r} for {t!r} ({fmt.spec}): {e}") from None

    def model_checksum(self) -> str:
        return self.loaded()[0].checksum()

    def build(self) -> "EngineRunner":
        return EngineRunner(self)

    # -- targets and groups --------------------------------------------------------------
    def targets(self) -> list[str]:
        """Names faults may hit (tensor names for weights, node names for activations)."""
        model, _ = self.loaded()
        from ..faults import select_names
        if self.target == "weights":
            names = list(model.params)
            default = [n.params["weight"] for n in model.graph.nodes if n.op in ("conv2d", "linear")]
        else:
            names = [n.name for n in model.graph.nodes]
            ops_ = {n.op for n in model.graph.nodes}
            want = ("act_quant",) if "act_quant" in ops_ else ("relu", "relu6", "hardtanh")
            default = [n.name for n in model.graph.nodes if n.op in want]
        what = "tensor" if self.target == "weights" else "node"
        if not self.include:
            return select_names(default, ("*",), self.exclude, what)
        return select_names(names, self.include, self.exclude, what)

    def groups(self) -> list | None:
        """Breakdown groups: target names (per layer) or bit positions (per bit)."""
        if self.group_by is None:
            return None
        targets = self.targets()
        if self.group_by == "layer":
            return targets
        return list(range(max(self._bits_of(t) for t in targets)))

    def _bits_of(self, name) -> int:
        model, _ = self.loaded()
        if self.target == "weights":
            return model.params[name].fmt.bits
        node = model.graph[name]
        return node.attrs["bits"] if node.op == "act_quant" else 32


class EngineRunner:
    """Per-worker trial runner of a :class:`FaultSweepSpec` (see module docstring)."""

    def __init__(self, spec: FaultSweepSpec):
        self.spec = spec
        self.model, data = spec.loaded()
        self.x = self.model.normalize(data.images)
        self.labels = data.labels
        self.bs = int(spec.batch_size or config.get("batch_size"))
        self.targets = spec.targets()
        self._kept = None
        keep = _records(self.model, len(self.labels), config.get("campaign_cache_mb"))
        self.clean, self.clean_nonfinite = self._predict(keep=keep)
        self._injectors: dict = {}

    def _predict(self, hook=None, keep=(), touched=None):
        """Top-1 predictions (-1 where the logits hold NaN/Inf) and the NaN/Inf count.

        ``keep``: record these nodes' outputs per batch (fault-free pass);
        ``touched``: parameter names changed since, recompute only downstream of them."""
        preds = np.empty(len(self.labels), np.int64)
        bad_total = 0
        if keep:
            self._kept = []
        for i, s in enumerate(range(0, len(preds), self.bs)):
            x = self.x[s:s + self.bs]
            if keep:
                rec = {}
                self._kept.append(rec)
                logits = self.model.forward(
                    x, observe=lambda node, out, rec=rec: rec.__setitem__(node.name, out)
                    if node.name in keep else None)
            elif touched is not None and self._kept is not None:
                logits = self.model.forward(x, reuse=(self._kept[i], touched))
            else:
                logits = self.model.forward(x, hook=hook)
            bad = ~np.isfinite(logits).all(axis=1)
            p = logits.argmax(axis=1)
            p[bad] = -1
            preds[s:s + self.bs] = p
            bad_total += int(bad.sum())
        return preds, bad_total

    def _scope(self, group):
        """(include names, bits filter) of a group."""
        if group is None:
            return self.targets, None
        if self.spec.group_by == "layer":
            return [group], None
        return [t for t in self.targets if self.spec._bits_of(t) > group], str(group)

    def _result(self, preds, nonfinite, n_faults, n_masked) -> dict:
        return {"correct": int((preds == self.labels).sum()),
                "sdc": int((preds != self.clean).sum()), "nonfinite": int(nonfinite),
                "n_faults": int(n_faults), "n_masked": int(n_masked),
                "n_images": int(len(self.labels))}

    def __call__(self, ber, trial, seed, group=None) -> dict:
        rng = np.random.default_rng(seed)
        include, bits = self._scope(group)
        if self.spec.target == "activations":
            hook = activation_fault_hook(self.spec.fault_model(ber, include, bits), rng,
                                         names=[n.name for n in self.model.graph.nodes])
            if ber == 0.0:
                return self._result(self.clean, self.clean_nonfinite, 0, 0)
            preds, nonfinite = self._predict(hook)
            return self._result(preds, nonfinite, hook.n_faults, hook.n_faults - hook.n_changed)
        key = (group, ber)
        if key not in self._injectors:
            self._injectors[key] = FaultInjector(self.model,
                                                 self.spec.fault_model(ber, include, bits))
        injector = self._injectors[key]
        applied = injector.inject(rng)
        try:
            n_masked = int(applied.masked.sum())
            if n_masked == len(applied):  # no stored bit changed: outputs are the clean ones
                return self._result(self.clean, self.clean_nonfinite, len(applied), n_masked)
            changed = np.unique(applied.tensor[~applied.masked.astype(bool)])
            preds, nonfinite = self._predict(touched=[applied.names[t] for t in changed])
        finally:
            injector.undo(applied)
        return self._result(preds, nonfinite, len(applied), n_masked)


def _records(model, n_images: int, budget_mb: float) -> set[str]:
    """Nodes whose fault-free outputs a runner keeps for incremental trials: inputs of
    parameterised nodes and of joins, deepest first, while they fit in ``budget_mb``."""
    graph = model.graph
    wanted = []
    for node in graph.nodes:
        if node.params or node.op in ("add", "concat"):
            wanted.extend(i for i in node.inputs if i in graph.by_name)
    total, keep = 0.0, set()
    for name in sorted(set(wanted), key=lambda n: -[m.name for m in graph.nodes].index(n)):
        size = float(np.prod(graph.shapes[name])) * n_images * 4 / 2 ** 20
        if total + size <= budget_mb:
            keep.add(name)
            total += size
    return keep
