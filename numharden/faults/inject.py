"""Sample faults on stored tensors, apply them in place and undo them.

A :class:`FaultInjector` resolves a :class:`FaultModel` against a set of named
StoredTensors once (filters, eligible bits, typed lists of raw views), then runs trials:
``sample`` (positions and kinds), ``apply`` (Numba kernel on the raw views, records old
and new codes = the undo log), ``undo`` (restores the old codes in reverse order).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np
from numba import types
from numba.typed import List

from ..errors import ConfigError, DTypeError, FormatError, MissingTensorError
from ..formats import StoredTensor
from . import _kernels as K
from .faultlist import FaultList
from .model import FaultModel, parse_bits, select_names
from .sampling import bernoulli_positions, draw_kinds


def tensors_of(obj) -> Mapping[str, StoredTensor]:
    """The name -> StoredTensor mapping of a Model (``.params``) or of a mapping."""
    params = getattr(obj, "params", obj)
    if not isinstance(params, Mapping):
        raise DTypeError(
            f"fault targets: expected a Model or a mapping name -> StoredTensor, found "
            f"{type(obj).__name__}"
        )
    for name, t in params.items():
        if not isinstance(t, StoredTensor):
            raise DTypeError(
                f"fault target {name!r}: expected a StoredTensor, found {type(t).__name__}; "
                "encode it with a Format first"
            )
    return params


class _Plan:
    """Raw views of named tensors grouped by width, as the kernels take them."""

    def __init__(self, names, tensors: Mapping[str, StoredTensor]):
        self.names = tuple(names)
        self.mapping = tensors
        self.build()

    def build(self) -> None:
        missing = [n for n in self.names if n not in self.mapping]
        if missing:
            raise MissingTensorError(
                f"fault targets {missing[:10]} are no longer in the model; build a new "
                "FaultInjector for the changed model"
            )
        self.tensors = [self.mapping[n] for n in self.names]
        lists = {w: List.empty_list(types.Array(dt, 1, "C"))
                 for w, dt in ((1, types.uint8), (2, types.uint16), (4, types.uint32))}
        n = len(self.tensors)
        self.width = np.empty(n, np.int64)
        self.slot = np.empty(n, np.int64)
        self.bits = np.empty(n, np.int64)
        self.signext = np.empty(n, np.bool_)
        self.codes = []
        for i, t in enumerate(self.tensors):
            w = t.codes.itemsize
            self.width[i], self.slot[i] = w, len(lists[w])
            self.bits[i], self.signext[i] = t.fmt.bits, t.fmt.sign_extends
            lists[w].append(t.raw().reshape(-1))
            self.codes.append(t.codes)
        self.l8, self.l16, self.l32 = lists[1], lists[2], lists[4]
        self.sizes = np.array([t.size for t in self.tensors], np.int64)
        self.formats = tuple(t.fmt.spec for t in self.tensors)

    def refresh(self) -> None:
        """Rebuild the views if a tensor or its codes array was replaced."""
        m = self.mapping
        if any(m.get(n) is not t or t.codes is not c
               for n, t, c in zip(self.names, self.tensors, self.codes)):
            self.build()

    def check(self, faults: FaultList) -> None:
        if faults.formats != self.formats or not np.array_equal(faults.sizes, self.sizes):
            for n, f, s, t in zip(self.names, faults.formats, faults.sizes, self.tensors):
                if f != t.fmt.spec or s != t.size:
                    raise FormatError(
                        f"fault list tensor {n!r} expects format {f} with {s} values, found "
                        f"{t.fmt.spec} with {t.size}; replay it on the model it was made for"
                    )
        bad = K._count_invalid(faults.tensor, faults.index, faults.bit, self.sizes, self.bits)
        if bad:
            raise FormatError(
                f"fault list has {bad} fault(s) with a tensor id, flat index or bit position "
                "outside its tensors; it is corrupt or was made for another model"
            )

    def apply(self, faults: FaultList) -> FaultList:
        self.refresh()
        self.check(faults)
        k = len(faults)
        old, new = np.empty(k, np.uint32), np.empty(k, np.uint32)
        masked = np.empty(k, np.bool_)
        changed = np.zeros(len(self.names), np.bool_)
        K._apply(self.l8, self.l16, self.l32, self.width, self.slot, self.bits, self.signext,
                 faults.tensor, faults.index, faults.bit, faults.kind, old, new, masked, changed)
        self._touch(changed)
        return FaultList(faults.names, faults.formats, faults.sizes, faults.tensor,
                         faults.index, faults.bit, faults.kind, old, new, masked, True)

    def undo(self, faults: FaultList) -> None:
        if not faults.applied:
            raise ConfigError("cannot undo a fault list that was not applied; pass the list "
                              "returned by apply/inject")
        self.refresh()
        self.check(faults)
        changed = np.zeros(len(self.names), np.bool_)
        K._undo(self.l8, self.l16, self.l32, self.width, self.slot, faults.tensor,
                faults.index, faults.old, changed)
        self._touch(changed)

    def _touch(self, changed) -> None:
        for i in np.flatnonzero(changed):
            self.tensors[i].touch()


class FaultInjector:
    """A fault model resolved against named stored tensors, ready for many trials.

    Parameters
    ----------
    targets : Model or mapping of str -> StoredTensor
        Tensors faults may hit; changed in place by :meth:`apply` / :meth:`inject`.
    model : FaultModel

    Attributes
    ----------
    names : tuple of str
        Targeted tensors after the include/exclude globs, in mapping order.
    positions : list of ndarray (int64)
        Eligible bit positions of each targeted tensor.
    n_bits : int
        Eligible bits over all targeted tensors (the Binomial's n for ``per='bit'``);
        bits of protected values (``StoredTensor.protect``) are not eligible, so the rate
        is per unprotected bit.
    n_values : int
        Unprotected values over all targeted tensors (the Binomial's n for
        ``per='value'``).
    """

    def __init__(self, targets, model: FaultModel):
        if not isinstance(model, FaultModel):
            raise DTypeError(f"fault model: expected a FaultModel, found {type(model).__name__}")
        self.tensors = tensors_of(targets)
        self.model = model
        self.names = tuple(select_names(self.tensors, model.include, model.exclude))
        self.positions = []
        for n in self.names:
            try:
                self.positions.append(parse_bits(model.bits, self.tensors[n].fmt))
            except ConfigError as e:
                raise ConfigError(f"tensor {n!r}: {e}") from None
        self._plan = _Plan(self.names, self.tensors)
        npos = np.array([len(p) for p in self.positions], np.int64)
        self._npos = npos
        self._table = np.zeros((len(self.names), 32), np.int64)
        for i, p in enumerate(self.positions):
            self._table[i, : len(p)] = p
        # protected values (StoredTensor.protect, read here once) hold no eligible bit:
        # positions are drawn over the unprotected values and mapped back to flat indices
        self._free = {i: np.flatnonzero(~t.protect.reshape(-1))
                      for i, t in enumerate(self._plan.tensors) if t.protect is not None}
        free = np.array([len(self._free[i]) if i in self._free else s
                         for i, s in enumerate(self._plan.sizes)], np.int64)
        self._vcum = np.concatenate([[0], np.cumsum(free)]).astype(np.int64)
        self._cum = np.concatenate([[0], np.cumsum(free * npos)]).astype(np.int64)
        self.n_bits = int(self._cum[-1])
        self.n_values = int(self._vcum[-1])
        self._weights = model.weights

    def sample(self, rng: np.random.Generator) -> FaultList:
        """Draw faulty bits and kinds (nothing is changed).

        Each eligible bit (``per='bit'``) or value (``per='value'``, then one uniformly
        chosen eligible bit of it) fails independently with probability ``model.rate``.

        Returns
        -------
        FaultList, not applied; faults sorted by tensor, then flat index (then bit).
        """
        if not isinstance(rng, np.random.Generator):
            raise DTypeError(
                f"rng: expected a numpy.random.Generator, found {type(rng).__name__}; "
                "use np.random.default_rng(seed)"
            )
        p = self.model.rate
        if self.model.per == "bit":
            g = bernoulli_positions(self.n_bits, p, rng)
            k = len(g)
            tensor, index = np.empty(k, np.int32), np.empty(k, np.int64)
            bit = np.empty(k, np.uint8)
            K._locate(g, self._cum, self._npos, self._table, tensor, index, bit)
        else:
            v = bernoulli_positions(self.n_values, p, rng)
            k = len(v)
            tensor, index = np.empty(k, np.int32), np.empty(k, np.int64)
            K._locate_values(v, self._vcum, tensor, index)
            slot = rng.integers(0, self._npos[tensor]) if k else np.empty(0, np.int64)
            bit = self._table[tensor, slot].astype(np.uint8)
        for t, free in self._free.items():
            sel = tensor == t
            index[sel] = free[index[sel]]
        kind = draw_kinds(k, self._weights, rng)
        return FaultList(self.names, self._plan.formats, self._plan.sizes, tensor, index,
                         bit, kind)

    def apply(self, faults: FaultList) -> FaultList:
        """Apply ``faults`` in place (in list order) and return them with old/new/masked.

        The returned list is the undo log; every tensor whose codes changed is touched.
        """
        if faults.names != self.names:
            raise ConfigError(
                "fault list names differ from this injector's targets; use "
                "apply_faults(targets, faults) to replay a list made elsewhere"
            )
        return self._plan.apply(faults)

    def undo(self, applied: FaultList) -> None:
        """Restore the codes recorded in ``applied`` (reverse order); touch changed tensors."""
        if applied.names != self.names:
            raise ConfigError("fault list names differ from this injector's targets")
        self._plan.undo(applied)

    def inject(self, rng: np.random.Generator) -> FaultList:
        """``apply(sample(rng))``."""
        return self._plan.apply(self.sample(rng))

    @contextmanager
    def trial(self, rng: np.random.Generator):
        """Context manager: inject faults, yield the applied FaultList, undo on exit."""
        applied = self.inject(rng)
        try:
            yield applied
        finally:
            self._plan.undo(applied)


def _plan_for(targets, faults: FaultList) -> _Plan:
    tensors = tensors_of(targets)
    missing = [n for n in faults.names if n not in tensors]
    if missing:
        raise MissingTensorError(
            f"fault list names tensor(s) {missing[:10]} that the model does not have; "
            f"available: {list(tensors)[:40]}"
        )
    return _Plan(faults.names, tensors)


def sample_faults(targets, model: FaultModel, rng: np.random.Generator) -> FaultList:
    """Draw faults of ``model`` on ``targets`` (see :meth:`FaultInjector.sample`)."""
    return FaultInjector(targets, model).sample(rng)


def inject_faults(targets, model: FaultModel, rng: np.random.Generator) -> FaultList:
    """Sample and apply faults in place; returns the applied list (the undo log)."""
    return FaultInjector(targets, model).inject(rng)


def apply_faults(targets, faults: FaultList, *, check: bool = True) -> FaultList:
    """Apply (replay) ``faults`` in place on ``targets``, matched by tensor name.

    Parameters
    ----------
    targets : Model or mapping str -> StoredTensor
    faults : FaultList
        E.g. loaded from HDF5. Formats and sizes must match the targets.
    check : bool
        If ``faults.applied``, verify the recorded old and new codes are reproduced
        bit-exactly; on mismatch the faults are undone and FormatError is raised.

    Returns
    -------
    FaultList, applied (the undo log for :func:`undo_faults`)
    """
    plan = _plan_for(targets, faults)
    out = plan.apply(faults)
    if check and faults.applied:
        bad = np.flatnonzero((out.old != faults.old) | (out.new != faults.new))
        if len(bad):
            plan.undo(out)
            f = bad[0]
            raise FormatError(
                f"replay mismatch on tensor {faults.names[faults.tensor[f]]!r} index "
                f"{faults.index[f]}: recorded old/new codes {faults.old[f]:#x}/{faults.new[f]:#x}, "
                f"found {out.old[f]:#x}/{out.new[f]:#x} ({len(bad)} mismatches); the model "
                "differs from the one the list was recorded on (pass check=False to force)"
            )
    return out


def undo_faults(targets, applied: FaultList) -> None:
    """Undo an applied fault list on ``targets`` (restores the recorded old codes)."""
    _plan_for(targets, applied).undo(applied)
