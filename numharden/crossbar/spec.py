"""The variation spec: a frozen description of a crossbar array and its non-idealities.

Every draw of cell conductances is a function of (``VariationSpec``, seed) alone, and the
spec round-trips through :meth:`VariationSpec.to_dict` / :meth:`VariationSpec.from_dict`.
Formulas and constants: docs/CROSSBAR.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["VariationSpec", "PCM", "PROGRAMMING", "MAPPINGS", "SCALINGS"]

PROGRAMMING = ("none", "gaussian", "lognormal", "additive", "pcm")
MAPPINGS = ("differential", "offset")
SCALINGS = ("layer", "column")

#: Constants of the PCM statistical model of IBM's analog toolkit (aihwkit
#: ``PCMLikeNoiseModel``, Nandakumar et al., ICECS 2019); see docs/CROSSBAR.md.
PCM = {
    "prog_coeff": (0.26348, 1.9650, -1.1731),  # uS, fitted at g_max = 25 uS
    "prog_g_max_reference": 25.0,              # uS
    "nu_mean": (-0.0155, 0.0244, 0.049, 0.1),  # a ln(g/gmax) + b clipped to [lo, hi]
    "nu_std": (-0.0125, -0.0059, 0.008, 0.045),
    "g_rel_min": 1e-7,                         # g/g_max floor inside the logarithm
    "t0": 20.0,                                # s, first read after programming
    "t_read": 250e-9,                          # s, read duration of the 1/f fit
    "q_s": (0.0088, 0.65, 1e-3, 0.2),          # Q_s = min(a / max((g/gmax)^p, lo), hi)
}


def _num(name, v, lo=0.0, hi=math.inf, lo_open=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"variation option {name}={v!r} must be a number")
    v = float(v)
    if not math.isfinite(v) or v < lo or (lo_open and v == lo) or v > hi:
        raise ConfigError(f"variation option {name}={v!r} must be finite and lie in "
                          f"{'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return v + 0.0


@dataclass(frozen=True)
class VariationSpec:
    """A crossbar mapping and its non-idealities (frozen; validated on creation).

    Parameters
    ----------
    programming : {'none', 'gaussian', 'lognormal', 'additive', 'pcm'}
        Programming variation per cell: ``g (1 + sigma z)``, ``g exp(sigma z)``,
        ``g + sigma g_max z`` or the PCM polynomial (scaled by ``sigma``).
    sigma : float >= 0
    mapping : {'differential', 'offset'}
        G+ / G- pair per weight, or one array against a noise-free reference.
    g_min, g_max : float
        Conductance range in uS, ``0 <= g_min < g_max``.
    cell_bits : int, optional
        Bit-slice integer codes over cells of this many bits (1..8), shift-and-add;
        None: one analog cell per weight and array.
    scaling : {'layer', 'column'}
        Analog cells: the largest |value| of the tensor or of its output channel (crossbar
        column) maps to ``g_max``. Bit-sliced cells use fixed digit levels ('layer' only).
    drift_time : float >= 0
        Seconds since programming at inference; 0 = no drift.
    drift_nu, drift_nu_std : float
        Drift exponent mean and spread for the non-PCM models (PCM draws its own).
    drift_compensation : bool
        Global drift compensation: each layer rescaled by a calibration read.
    read_noise : float, optional
        Read noise drawn anew per forward batch: relative sigma for the generic models,
        scale of the 1/f model for 'pcm'. None: 0, or 1 for 'pcm'.
    stuck_on, stuck_off : float in [0, 1]
        Per-cell probabilities of being stuck at ``g_max`` / ``g_min``.
    """

    programming: str = "none"
    sigma: float = 0.0
    mapping: str = "differential"
    g_min: float = 0.0
    g_max: float = 25.0
    cell_bits: int | None = None
    scaling: str = "layer"
    drift_time: float = 0.0
    drift_nu: float | None = None
    drift_nu_std: float = 0.0
    drift_compensation: bool = False
    read_noise: float | None = None
    stuck_on: float = 0.0
    stuck_off: float = 0.0

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        for name, allowed in (("programming", PROGRAMMING), ("mapping", MAPPINGS),
                              ("scaling", SCALINGS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"variation option {name}={getattr(self, name)!r}; "
                                  f"expected one of {list(allowed)}")
        set_("sigma", _num("sigma", self.sigma))
        if self.programming == "none" and self.sigma > 0:
            raise ConfigError(f"variation sigma={self.sigma} needs a programming model: "
                              f"gaussian, lognormal, additive or pcm")
        set_("g_min", _num("g_min", self.g_min))
        set_("g_max", _num("g_max", self.g_max, lo_open=True))
        if self.g_min >= self.g_max:
            raise ConfigError(f"variation g_min={self.g_min} must be below g_max={self.g_max} (uS)")
        cb = self.cell_bits
        if cb is not None and (isinstance(cb, bool) or not isinstance(cb, int) or not 1 <= cb <= 8):
            raise ConfigError(f"variation option cell_bits={cb!r} must be an integer in [1, 8] "
                              f"or absent (one analog cell per weight)")
        if cb is not None and self.scaling != "layer":
            raise ConfigError("scaling='column' applies to analog cells; bit-sliced cells "
                              "(cell_bits) use fixed digit levels - drop one of the two")
        set_("drift_time", _num("drift_time", self.drift_time))
        if self.programming == "pcm":
            if self.drift_nu is not None or self.drift_nu_std:
                raise ConfigError("the PCM model draws its own drift exponent; drop "
                                  "drift_nu/drift_nu_std with pcm")
        else:
            if self.drift_nu is not None:
                set_("drift_nu", _num("drift_nu", self.drift_nu, -1.0, 1.0))
            set_("drift_nu_std", _num("drift_nu_std", self.drift_nu_std, 0.0, 1.0))
            if self.drift_nu is None and (self.drift_nu_std or self.drift_time > 0):
                raise ConfigError(f"drift (drift_time={self.drift_time} s, drift_nu_std) needs "
                                  f"a drift model: pcm or drift_nu (e.g. 0.05)")
        if not isinstance(self.drift_compensation, bool):
            raise ConfigError(f"drift_compensation must be a bool, got {self.drift_compensation!r}")
        if self.drift_compensation and not (self.programming == "pcm" or self.drift_nu is not None):
            raise ConfigError("drift compensation needs a drift model (pcm or drift_nu)")
        if self.read_noise is not None:
            set_("read_noise", _num("read_noise", self.read_noise))
        set_("stuck_on", _num("stuck_on", self.stuck_on, 0.0, 1.0))
        set_("stuck_off", _num("stuck_off", self.stuck_off, 0.0, 1.0))
        if self.stuck_on + self.stuck_off > 1.0:
            raise ConfigError(f"stuck_on + stuck_off = {self.stuck_on + self.stuck_off} "
                              f"exceeds 1; they are probabilities of disjoint cell states")

    @property
    def read_sigma(self) -> float:
        """Read-noise parameter in effect (model default when ``read_noise`` is None)."""
        if self.read_noise is not None:
            return self.read_noise
        return 1.0 if self.programming == "pcm" else 0.0

    @property
    def ideal(self) -> bool:
        """No non-ideality: effective weights equal the stored values exactly."""
        return (self.programming in ("none", "gaussian", "lognormal", "additive")
                and self.sigma == 0 and self.read_sigma == 0 and self.stuck_on == 0
                and self.stuck_off == 0 and (self.drift_time == 0 or not (
                    self.drift_nu or self.drift_nu_std)))

    def to_dict(self) -> dict:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VariationSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) - names:
            raise ConfigError(f"variation spec {d!r} has unknown fields; known: {sorted(names)}")
        return cls(**d)
