"""Fault models and target filters: which bits of which stored tensors can fail, and how.

A :class:`FaultModel` names a fault kind (bit flip, stuck-at-0, stuck-at-1 or a mixture),
a rate (per stored bit, or per value with one uniformly chosen bit), tensor-name globs and
a bit-position filter. Bit 0 is the least significant bit of the stored code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np

from ..errors import ConfigError, MissingTensorError
from ..formats import parse_format

FLIP, SA0, SA1 = 0, 1, 2
KIND_NAMES = ("flip", "sa0", "sa1")
_KINDS = ("flip", "sa0", "sa1", "stuck", "mix")
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


@dataclass(frozen=True)
class FaultModel:
    """What fails and how often.

    Parameters
    ----------
    rate : float in [0, 1]
        Probability that an eligible stored bit is faulty (``per='bit'``, the BER), or that
        an eligible value is faulty (``per='value'``; then one uniformly chosen eligible
        bit of it is hit).
    kind : {'flip', 'sa0', 'sa1', 'stuck', 'mix'}
        Bit flip, stuck-at-0, stuck-at-1; ``'stuck'`` draws stuck-at-1 with probability
        ``sa1_fraction`` else stuck-at-0; ``'mix'`` draws each fault's kind with the
        weights ``mix = (flip, sa0, sa1)``.
    sa1_fraction : float in [0, 1], optional
        Only with ``kind='stuck'`` (default 0.5).
    mix : tuple of 3 floats >= 0, optional
        Only with ``kind='mix'``: relative weights of flip, sa0, sa1.
    per : {'bit', 'value'}
    include, exclude : tuple of str
        Tensor (or node) name globs (``fnmatch``); a glob matching no name is an error.
    bits : str or None
        Eligible bit positions, comma separated: index ranges (``'0-3,7'``) or names of
        the format's bit fields (floats ``sign``/``exponent``/``mantissa``; integers
        ``msb``/``lsb``/``sign``). None means every stored bit.
    """

    rate: float
    kind: str = "flip"
    sa1_fraction: float | None = None
    mix: tuple[float, float, float] | None = None
    per: str = "bit"
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    bits: str | None = None

    def __post_init__(self) -> None:
        r = self.rate
        if isinstance(r, bool) or not isinstance(r, (int, float, np.floating, np.integer)):
            raise ConfigError(f"fault rate: expected a number in [0, 1], found {r!r}")
        if not (math.isfinite(float(r)) and 0.0 <= float(r) <= 1.0):
            raise ConfigError(
                f"fault rate {r!r} is outside [0, 1]; give a probability per bit (BER, e.g. "
                "1e-5) or per value"
            )
        object.__setattr__(self, "rate", float(r))
        if self.kind not in _KINDS:
            raise ConfigError(f"fault kind {self.kind!r} unknown; choose one of {_KINDS}")
        if self.per not in ("bit", "value"):
            raise ConfigError(f"fault rate 'per' must be 'bit' or 'value', found {self.per!r}")
        if self.sa1_fraction is not None:
            if self.kind != "stuck":
                raise ConfigError(
                    f"sa1_fraction is only used by kind='stuck', found kind={self.kind!r}; "
                    "drop it or use kind='stuck'"
                )
            if not 0.0 <= float(self.sa1_fraction) <= 1.0:
                raise ConfigError(f"sa1_fraction {self.sa1_fraction!r} is outside [0, 1]")
        if self.kind == "mix" and self.mix is None:
            raise ConfigError("fault kind 'mix' needs the weights of its three fault kinds: "
                              "--mix FLIP,SA0,SA1 (e.g. --mix 1,1,1 for equal shares), or "
                              "mix=(flip, sa0, sa1) in the library")
        if self.mix is not None and self.kind != "mix":
            raise ConfigError(f"mix weights {tuple(self.mix)} only apply to fault kind "
                              f"'mix', found kind={self.kind!r}; use --fault mix or drop --mix")
        if self.mix is not None:
            w = tuple(float(v) for v in self.mix)
            if len(w) != 3 or min(w) < 0 or not math.isfinite(sum(w)) or sum(w) <= 0:
                raise ConfigError(
                    f"mix weights must be three finite numbers >= 0 with a positive sum "
                    f"(flip, sa0, sa1), found {self.mix!r}"
                )
            object.__setattr__(self, "mix", w)
        for attr in ("include", "exclude"):
            v = getattr(self, attr)
            v = (v,) if isinstance(v, str) else tuple(v)
            if not all(isinstance(g, str) and g for g in v):
                raise ConfigError(f"{attr} globs must be non-empty strings, found {v!r}")
            object.__setattr__(self, attr, v)
        if not self.include:
            raise ConfigError("include globs are empty: nothing can fail; use ('*',)")
        if self.bits is not None and (not isinstance(self.bits, str) or not self.bits.strip()):
            raise ConfigError(
                f"bits filter must be a non-empty string or None, found {self.bits!r}"
            )

    @property
    def weights(self) -> np.ndarray:
        """Probabilities of (flip, sa0, sa1) for each fault, float64 (3,), summing to 1."""
        if self.kind == "mix":
            w = np.array(self.mix, dtype=np.float64)
        elif self.kind == "stuck":
            f = 0.5 if self.sa1_fraction is None else float(self.sa1_fraction)
            w = np.array([0.0, 1.0 - f, f])
        else:
            w = np.zeros(3)
            w[KIND_NAMES.index(self.kind)] = 1.0
        return w / w.sum()


def parse_bits(spec: str | None, fmt) -> np.ndarray:
    """Bit positions selected by ``spec`` for values of format ``fmt``.

    Parameters
    ----------
    spec : str or None
        Comma-separated index ranges (``'0-3,7'``) and bit-field names of ``fmt``; None
        selects all ``fmt.bits`` bits.
    fmt : Format or str

    Returns
    -------
    ndarray, sorted unique positions, int64, each in ``[0, fmt.bits)``
    """
    fmt = parse_format(fmt)
    if spec is None:
        return np.arange(fmt.bits, dtype=np.int64)
    fields = fmt.bit_fields
    out: set[int] = set()
    for tok in (t.strip().lower() for t in spec.split(",")):
        m = _RANGE.fullmatch(tok)
        if tok in fields:
            out.update(fields[tok])
        elif m:
            a, b = int(m.group(1)), int(m.group(2) or m.group(1))
            if a > b or b >= fmt.bits:
                raise ConfigError(
                    f"bit range {tok!r} is invalid for format {fmt.spec} with bits 0.."
                    f"{fmt.bits - 1}; give 'lo-hi' with lo <= hi < {fmt.bits} or exclude the "
                    "tensors of that format"
                )
            out.update(range(a, b + 1))
        else:
            raise ConfigError(
                f"bit filter token {tok!r} is not valid for format {fmt.spec}; use index "
                f"ranges like '0-3,7' or one of {sorted(fields)}"
            )
    return np.array(sorted(out), dtype=np.int64)


def select_names(names, include, exclude, what: str = "tensor") -> list[str]:
    """Names (in the given order) matching any include glob and no exclude glob.

    Raises MissingTensorError if a glob matches no name, ConfigError if nothing is left.
    """
    names = list(names)
    for g in (*include, *exclude):
        if not any(fnmatchcase(n, g) for n in names):
            shown = ", ".join(names[:40])
            if len(names) > 40:
                shown += f", ... ({len(names)} in all)"
            raise MissingTensorError(
                f"{what} glob {g!r} matches no {what} name; available: [{shown}]"
            )
    keep = [n for n in names
            if any(fnmatchcase(n, g) for g in include)
            and not any(fnmatchcase(n, g) for g in exclude)]
    if not keep:
        raise ConfigError(
            f"include {list(include)} minus exclude {list(exclude)} leaves no {what}; "
            "loosen the globs"
        )
    return keep

