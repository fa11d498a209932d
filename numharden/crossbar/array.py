"""Map stored tensors onto crossbar cells, draw their conductances, read effective weights.

A :class:`CrossbarInjector` resolves a :class:`VariationSpec` against named StoredTensors
once (integer values, per-column offsets and spans), then runs trials: :meth:`draw`
(programming variation, drift, stuck cells: a :class:`Draw`), :meth:`effective` (the
weights the array computes with, read noise drawn per read) and :meth:`apply` /
:meth:`restore`, which swap fp32 effective tensors into the model and put the stored
tensors back untouched (bit-exact restore by construction). Effective weights are taken
from the stored codes as they are at draw time, i.e. after any bit faults, and batch
norm is folded by the model afterwards.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DTypeError
from ..faults.inject import tensors_of
from ..faults.model import select_names
from ..faults.sampling import bernoulli_positions
from ..formats import StoredTensor, parse_format
from . import _kernels as K
from .spec import PCM, VariationSpec

_PROG = {"none": 0, "gaussian": 1, "lognormal": 2, "additive": 3, "pcm": 4}
_FP32 = parse_format("fp32")


@dataclass
class Draw:
    """One draw of every cell: reconstructions at t=0 and t, kept cells, stuck counts."""

    seed_keys: np.ndarray          # uint64 (T, 3): programming, drift, read streams
    rec0: list                     # float64 per tensor: integer values after programming
    rect: list                     # ... after drift (and stuck cells)
    cells: list                    # (g, read sigma) per tensor when read noise is on
    alpha: np.ndarray              # drift compensation factor per tensor (1 without)
    n_stuck_on: int
    n_stuck_off: int


class _Layout:
    """Values of one tensor as the array holds them (float64 flat), per-row offset/span."""

    def __init__(self, name: str, st: StoredTensor, spec: VariationSpec):
        fmt = st.fmt
        self.name, self.shape = name, st.shape
        self.rows = st.shape[0] if st.codes.ndim else 1
        self.rowlen = max(st.size // max(self.rows, 1), 1)
        q = st.codes.astype(np.float64)
        unit = np.ones(st.shape, np.float64)
        if fmt.kind in ("int", "affine"):
            b = [1] * st.codes.ndim
            if st.axis is not None:
                b[st.axis] = -1
            if st.zero_point is not None:
                q = q - np.asarray(st.zero_point, np.float64).reshape(b)
            unit = unit * np.asarray(st.scale, np.float64).reshape(b)
        elif fmt.kind == "fixed":
            unit = unit * 2.0 ** -fmt.frac_bits
        elif spec.cell_bits is not None:
            raise ConfigError(f"tensor {name!r} has float format {fmt.spec}; bit slicing "
                              f"(cell_bits) needs integer codes - encode it as intN first")
        self.c = np.ascontiguousarray(q.reshape(-1))
        self.unit = unit.reshape(-1)
        self.decoded = st.decode().reshape(-1)
        p = st.protect
        self.prot = np.zeros(st.size, np.bool_) if p is None else np.ascontiguousarray(p).reshape(-1)
        mags = np.abs(self.c).reshape(self.rows, self.rowlen).max(axis=1) if st.size else np.zeros(1)
        if spec.scaling == "layer":
            mags = np.full(self.rows, mags.max() if mags.size else 0.0)
        mags = np.where(mags > 0, mags, 1.0)
        if spec.cell_bits is None:
            self.slices = 1
            self.off = mags if spec.mapping == "offset" else np.zeros(self.rows)
            self.span = 2 * mags if spec.mapping == "offset" else mags
        else:
            self.slices = -(-fmt.bits // spec.cell_bits)
            if spec.mapping == "offset":  # the raw unsigned code; the reference is exact
                zp = 0.0 if fmt.kind == "affine" else float(1 << (fmt.bits - 1))
                self.off = np.full(self.rows, zp)
                if fmt.kind == "affine":
                    zpa = np.asarray(st.zero_point, np.float64).reshape(-1)
                    self.off = np.broadcast_to(zpa, (self.rows,)).copy() if zpa.size in (
                        1, self.rows) else self.off
            else:
                self.off = np.zeros(self.rows)
            self.span = np.ones(self.rows)
        self.arrays = 2 if spec.mapping == "differential" else 1
        self.n_cells = st.size * self.arrays * self.slices
        self.n_free_cells = int((~self.prot).sum()) * self.arrays * self.slices


class CrossbarInjector:
    """A variation spec resolved against named stored tensors, ready for many draws.

    Parameters
    ----------
    targets : Model or mapping str -> StoredTensor
    spec : VariationSpec
    include, exclude : tuple of str
        Tensor globs (default: every target; the CLI passes the conv/linear weights).
    """

    def __init__(self, targets, spec: VariationSpec, include=("*",), exclude=()):
        if not isinstance(spec, VariationSpec):
            raise DTypeError(f"variation spec: expected a VariationSpec, found {type(spec).__name__}")
        self.targets = targets
        self.tensors = tensors_of(targets)
        self.spec = spec
        self.names = tuple(select_names(self.tensors, include, exclude))
        self._saved: dict | None = None
        t0 = PCM["t0"]
        t = spec.drift_time
        s = spec
        drift = 0 if t == 0 else (2 if s.programming == "pcm" else 1)
        pread = math.sqrt(math.log((t + t0 + PCM["t_read"]) / (2 * PCM["t_read"])))
        self.par = np.array([s.g_min, s.g_max, s.sigma, math.log((t + t0) / t0),
                             s.drift_nu or 0.0, s.drift_nu_std, s.read_sigma, pread])
        self.ip = np.array([_PROG[s.programming], drift, 0 if s.mapping == "differential" else 1,
                            1, s.cell_bits or 0, int(s.read_sigma > 0)], np.int64)
        self._layouts()
        self._stamp = [(self.tensors[n], self.tensors[n].version) for n in self.names]

    def _layouts(self):
        self.layouts = [_Layout(n, self.tensors[n], self.spec) for n in self.names]
        self.n_cells = sum(lay.n_cells for lay in self.layouts)
        self.n_free_cells = sum(lay.n_free_cells for lay in self.layouts)

    def _stuck(self, rng):
        """Sorted local stuck-cell ids and kinds (0 on, 1 off) per tensor: exact Binomial
        counts over the unprotected cells, positions uniform without replacement."""
        s = self.spec
        p = s.stuck_on + s.stuck_off
        pos = bernoulli_positions(self.n_free_cells, p, rng)
        on = rng.random(len(pos)) < (s.stuck_on / p if p > 0 else 0.0)
        out, start = [], 0
        for lay in self.layouts:
            lo, hi = np.searchsorted(pos, [start, start + lay.n_free_cells])
            local = pos[lo:hi] - start
            per = lay.arrays * lay.slices
            free = np.flatnonzero(~lay.prot)
            ids = free[local // per] * per + local % per
            out.append((ids.astype(np.int64), np.where(on[lo:hi], 0, 1).astype(np.uint8)))
            start += lay.n_free_cells
        return out, int(on.sum()), int((~on).sum())

    def draw(self, rng: np.random.Generator) -> Draw:
        """Draw programming variation, drift exponents and stuck cells for every cell."""
        if not isinstance(rng, np.random.Generator):
            raise DTypeError(f"rng: expected a numpy.random.Generator, found "
                             f"{type(rng).__name__}; use np.random.default_rng(seed)")
        self._refresh()
        keys = rng.integers(0, 2**64, size=(len(self.layouts), 3), dtype=np.uint64)
        stuck, n_on, n_off = self._stuck(rng)
        rec0, rect, cells, alpha = [], [], [], np.ones(len(self.layouts))
        keep = bool(self.ip[5])
        for t, lay in enumerate(self.layouts):
            ip = self.ip.copy()
            ip[3] = lay.slices
            r0, rt = np.empty(lay.c.size), np.empty(lay.c.size)
            n = lay.n_cells if keep else 0
            gd, sd = np.empty(n), np.empty(n)
            K._program(lay.c, lay.off, lay.span, lay.prot, lay.rowlen, stuck[t][0],
                       stuck[t][1], self.par, ip, keys[t], r0, rt, gd, sd)
            rec0.append(r0)
            rect.append(rt)
            cells.append((gd, sd) if keep else None)
            if self.spec.drift_compensation:
                alpha[t] = _compensation(lay, r0, rt)
        return Draw(keys, rec0, rect, cells, alpha, n_on, n_off)

    def _refresh(self):
        """Re-read the codes if a tensor was replaced or changed (e.g. by bit faults)."""
        now = [(self.tensors[n], self.tensors[n].version) for n in self.names]
        if getattr(self, "_stamp", None) is None or any(
                a is not b or va != vb for (a, va), (b, vb) in zip(now, self._stamp)):
            self._layouts()
        self._stamp = now

    def effective(self, draw: Draw, read: int | None = 0) -> dict:
        """Effective float32 weights (stored layouts) of every target.

        ``read``: index of the read (forward batch); read noise is drawn from its own
        stream per read. None reads without read noise."""
        out = {}
        for t, lay in enumerate(self.layouts):
            if draw.cells[t] is not None and read is not None:
                key = K._mix(np.uint64((int(draw.seed_keys[t, 2]) + (read + 1) * int(K.GOLDEN)) % 2**64))
                ip = self.ip.copy()
                ip[3] = lay.slices
                rec = np.empty(lay.c.size)
                K._read(lay.c, lay.off, lay.span, lay.prot, lay.rowlen, draw.cells[t][0],
                        draw.cells[t][1], self.par, ip, np.uint64(key), rec)
            else:
                rec = draw.rect[t]
            rec = np.where(lay.prot, rec, rec * draw.alpha[t])
            w = (rec * lay.unit).astype(np.float32)
            w[lay.prot] = lay.decoded[lay.prot]
            out[lay.name] = w.reshape(lay.shape)
        return out

    def apply(self, draw: Draw, read: int | None = 0) -> None:
        """Swap fp32 effective tensors into the targets (keeps the stored ones aside)."""
        saved = self._saved or {n: self.tensors[n] for n in self.names}
        for name, w in self.effective(draw, read).items():
            self.tensors[name] = StoredTensor(w, _FP32)
        self._saved = saved

    def restore(self) -> None:
        """Put the stored tensors back (the very objects: bit-exact)."""
        if self._saved:
            self.tensors.update(self._saved)
        self._saved = None

    @contextmanager
    def trial(self, rng: np.random.Generator):
        """Draw, apply (read 0), yield the Draw, restore."""
        draw = self.draw(rng)
        self.apply(draw)
        try:
            yield draw
        finally:
            self.restore()


def _compensation(lay: _Layout, r0, rt) -> float:
    """Global drift compensation: ratio of the calibration reads (all-ones input, sum of
    |column outputs|) at t=0 and at t, over the array-held (unprotected) weights."""
    free = ~lay.prot
    a0 = np.abs(np.where(free, r0 * lay.unit, 0).reshape(lay.rows, -1).sum(1)).sum()
    at = np.abs(np.where(free, rt * lay.unit, 0).reshape(lay.rows, -1).sum(1)).sum()
    return float(a0 / at) if at > 0 else 1.0
