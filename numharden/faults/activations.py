"""Transient faults on activations: a hook the graph executor calls after every node.

The executor calls ``hook(node, out, fmt)`` with the node's stored-form output (uint
codes of an ``act_quant`` node with fmt ``uint<bits>``, float32 with fmt ``fp32``
otherwise). The hook draws fresh faults at every call and changes ``out`` in place.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import numpy as np

from ..errors import ConfigError, DTypeError
from ..formats import parse_format
from . import _kernels as K
from .model import FaultModel, parse_bits, select_names
from .sampling import bernoulli_positions, draw_kinds

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32}


class ActivationFaultHook:
    """Callable ``hook(node, out, fmt)`` injecting faults of ``model`` into activations.

    Parameters
    ----------
    model : FaultModel
        Rate, kind and filters; ``include``/``exclude`` globs match node names and
        ``bits`` is resolved against each call's ``fmt``.
    rng : numpy.random.Generator
        Source of all randomness; every call draws fresh faults from it.
    names : iterable of str, optional
        All node names of the graph. If given, the globs are checked against them up
        front (a glob matching nothing raises MissingTensorError); otherwise globs are
        matched at each call and cannot be checked.

    Attributes
    ----------
    n_calls : int
        Calls that targeted a node (after the name filter).
    n_faults : int
        Faults drawn so far.
    n_changed : int
        Faults that changed a stored code (stuck-at faults may be masked).
    """

    def __init__(self, model: FaultModel, rng: np.random.Generator, names=None):
        if not isinstance(model, FaultModel):
            raise DTypeError(f"fault model: expected a FaultModel, found {type(model).__name__}")
        if not isinstance(rng, np.random.Generator):
            raise DTypeError(
                f"rng: expected a numpy.random.Generator, found {type(rng).__name__}; "
                "use np.random.default_rng(seed)"
            )
        self.model, self.rng = model, rng
        self._weights = model.weights
        self._selected = None
        if names is not None:
            self._selected = frozenset(
                select_names(list(names), model.include, model.exclude, what="node"))
        self._positions: dict[str, np.ndarray] = {}
        self.n_calls = self.n_faults = self.n_changed = 0

    def targets(self, name: str) -> bool:
        """Whether node ``name`` passes the include/exclude globs."""
        if self._selected is not None:
            return name in self._selected
        m = self.model
        return (any(fnmatchcase(name, g) for g in m.include)
                and not any(fnmatchcase(name, g) for g in m.exclude))

    def __call__(self, node, out: np.ndarray, fmt) -> None:
        """Flip/stick bits of ``out`` in place.

        Parameters
        ----------
        node : object with a ``.name`` str
        out : ndarray, any shape, C-contiguous, writable
            ``fmt.storage_dtype`` for float formats; an integer dtype of at least
            ``fmt.bits`` bits (8/16/32-bit) for integer formats.
        fmt : Format or spec str
        """
        name = node.name
        if not self.targets(name):
            return
        fmt = parse_format(fmt)
        raw = self._raw(name, out, fmt)
        pos = self._positions.get(fmt.spec)
        if pos is None:
            try:
                pos = parse_bits(self.model.bits, fmt)
            except ConfigError as e:
                raise ConfigError(f"activation of node {name!r}: {e}") from None
            self._positions[fmt.spec] = pos
        npos = len(pos)
        self.n_calls += 1
        if self.model.per == "bit":
            g = bernoulli_positions(raw.size * npos, self.model.rate, self.rng)
            index, bit = g // npos, pos[g % npos].astype(np.uint8)
        else:
            index = bernoulli_positions(raw.size, self.model.rate, self.rng)
            bit = pos[self.rng.integers(0, npos, size=len(index))].astype(np.uint8)
        k = len(index)
        if k == 0:
            return
        kind = draw_kinds(k, self._weights, self.rng)
        self.n_faults += k
        self.n_changed += int(K._apply_array(raw, index, bit, kind, fmt.bits, fmt.sign_extends))

    @staticmethod
    def _raw(name, out, fmt) -> np.ndarray:
        if not isinstance(out, np.ndarray):
            raise DTypeError(f"activation of node {name!r}: expected an ndarray, found "
                             f"{type(out).__name__}")
        if fmt.kind == "float":
            ok = out.dtype == fmt.storage_dtype
        else:
            ok = out.dtype.kind in "iu" and out.itemsize in _UINT and 8 * out.itemsize >= fmt.bits
        if not ok:
            raise DTypeError(
                f"activation of node {name!r}: format {fmt.spec} needs "
                f"{fmt.storage_dtype if fmt.kind == 'float' else 'integer codes'}, found "
                f"dtype {out.dtype}; pass the stored-form output"
            )
        if not (out.flags.c_contiguous and out.flags.writeable):
            raise DTypeError(
                f"activation of node {name!r}: the hook changes the output in place, so it "
                "must be a writable C-contiguous array; pass np.ascontiguousarray(out)"
            )
        return out.reshape(-1).view(_UINT[out.itemsize])


def activation_fault_hook(model: FaultModel, rng: np.random.Generator,
                          names=None) -> ActivationFaultHook:
    """Return a hook ``hook(node, out, fmt)`` that injects ``model`` into activations.

    See :class:`ActivationFaultHook`; pass it as ``Model.forward(x, hook=...)``.
    """
    return ActivationFaultHook(model, rng, names)
