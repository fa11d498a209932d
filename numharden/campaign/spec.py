"""Campaign configuration and the trial-runner protocol.

A campaign needs two things: a :class:`CampaignConfig` (which BERs, how many trials,
the seed, the stopping rule, optional breakdown groups) and a *trial spec*, a small
picklable object that knows how to build the expensive trial runner. See the package
docstring (:mod:`numharden.campaign`) for the protocol in full.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, FormatError
from .seeds import ber_key, check_group

__all__ = ["CampaignConfig", "RESULT_FIELDS", "check_spec", "check_trial_result",
           "canonical_json"]

#: Swept quantities whose levels are probabilities (at most 1).
RATE_QUANTITIES = ("ber", "stuck_on", "stuck_off")

#: Label, unit and axis scale of each swept quantity (tables, JSON, plots).
QUANTITY_LABELS = {"ber": ("bit-error rate", "", "log"),
                   "sigma": ("programming sigma", "", "linear"),
                   "drift_time": ("drift time", "s", "log"),
                   "read_noise": ("read noise", "", "linear"),
                   "stuck_on": ("stuck-on cell rate", "", "log"),
                   "stuck_off": ("stuck-off cell rate", "", "log")}

#: Integer counts every trial result must carry.
RESULT_FIELDS = ("correct", "sdc", "nonfinite", "n_faults", "n_masked", "n_images")


def canonical_json(obj) -> str:
    """Deterministic JSON text (sorted keys, no spaces) used for hashing and comparing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _int(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"campaign option {name}={value!r} must be an integer >= {minimum}")
    if value < minimum:
        raise ConfigError(f"campaign option {name}={value} is below its minimum {minimum}")
    return int(value)


@dataclass(frozen=True)
class CampaignConfig:
    """Everything besides the trial spec that decides which trials a campaign runs.

    Parameters
    ----------
    bers : sequence of float
        Bit-error rates, each finite and >= 0, no repeats (kept in the given order).
    trials : int
        Number of trials per (group, BER) cell; with ``ci_width`` the minimum number.
    seed : int
        Campaign seed (>= 0); with the BER, trial index and group it fixes every
        trial's :func:`~numharden.campaign.seeds.trial_seed`.
    ci_width : float, optional
        Adaptive stopping: add trials to a cell until the half-width of its accuracy
        interval is at most ``ci_width`` (a fraction, e.g. 0.005 for +-0.5 points).
    max_trials : int, optional
        Cap on trials per cell; required with ``ci_width``, forbidden without it.
    round_size : int, optional
        Trials added per adaptive round (default: ``trials``). Stopping is decided only
        on complete rounds, so the trials run depend on results alone, never on the
        number of workers or the order in which trials finish.
    groups : sequence of (str or int), optional
        Breakdown keys (layer names for per-layer, bit indices for per-bit campaigns);
        every group runs every BER. None for an ordinary sweep.
    confidence : float
        Two-sided confidence level of every interval (default 0.95).
    quantity : str
        What ``bers`` hold: ``'ber'`` (bit-error rates) or a swept crossbar quantity
        (``sigma``, ``drift_time``, ``read_noise``, ``stuck_on``, ``stuck_off``); rates
        must be at most 1. The name and unit label tables, JSON and plots.
    """

    bers: tuple
    trials: int = 100
    seed: int = 0
    ci_width: float | None = None
    max_trials: int | None = None
    round_size: int | None = None
    groups: tuple | None = None
    confidence: float = 0.95
    quantity: str = "ber"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        bers = self.bers
        if isinstance(bers, (int, float)) or bers is None:
            raise ConfigError(f"campaign option bers={bers!r} must be a sequence of rates, "
                              f"e.g. [1e-6, 1e-5]")
        bers = tuple(float(b) + 0.0 for b in bers)
        if not bers:
            raise ConfigError("campaign option bers is empty; give at least one rate")
        for b in bers:
            ber_key(b)
            if b > 1.0 and self.quantity in RATE_QUANTITIES:
                raise ConfigError(f"bit-error rate {b!r} exceeds 1; rates are probabilities")
        if len(set(bers)) != len(bers):
            raise ConfigError(f"campaign option bers={list(bers)} repeats a rate; give each "
                              f"rate once")
        if self.quantity not in QUANTITY_LABELS:
            raise ConfigError(f"campaign quantity {self.quantity!r}; expected one of "
                              f"{list(QUANTITY_LABELS)}")
        set_("bers", bers)
        set_("seed", _int("seed", self.seed, 0))
        if self.ci_width is None:
            set_("trials", _int("trials", self.trials, 1))
            if self.max_trials is not None or self.round_size is not None:
                raise ConfigError("campaign options max_trials/round_size only apply with "
                                  "ci_width; set ci_width or drop them")
        else:
            w = float(self.ci_width)
            if not 0.0 < w < 1.0 or not math.isfinite(w):
                raise ConfigError(f"campaign option ci_width={self.ci_width!r} must lie in "
                                  f"(0, 1), e.g. 0.005 for +-0.5 accuracy points")
            set_("ci_width", w)
            set_("trials", _int("trials (minimum with ci_width)", self.trials, 2))
            if self.max_trials is None:
                raise ConfigError("campaign option ci_width needs max_trials, the cap on "
                                  "trials per BER; e.g. max_trials=1000")
            set_("max_trials", _int("max_trials", self.max_trials, self.trials))
            rs = self.trials if self.round_size is None else self.round_size
            set_("round_size", _int("round_size", rs, 1))
        if self.groups is not None:
            groups = tuple(int(g) if isinstance(g, np.integer) else g for g in self.groups)
            for g in groups:
                check_group(g)
                if g is None:
                    raise ConfigError("breakdown groups may not contain None")
            if not groups or len(set(groups)) != len(groups):
                raise ConfigError(f"campaign option groups={list(groups)} must be a "
                                  f"non-empty list without repeats")
            set_("groups", groups)
        c = float(self.confidence)
        if not 0.5 <= c < 1.0:
            raise ConfigError(f"campaign option confidence={self.confidence!r} must lie in "
                              f"[0.5, 1), e.g. 0.95")
        set_("confidence", c)

    @property
    def adaptive(self) -> bool:
        """True when trials are added until the interval is narrow enough."""
        return self.ci_width is not None

    def cells(self) -> list:
        """(group, ber) cells in canonical order: groups outer, BERs inner."""
        groups = self.groups if self.groups is not None else (None,)
        return [(g, b) for g in groups for b in self.bers]

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists); :meth:`from_dict` inverts it."""
        d = dataclasses.asdict(self)
        d["bers"] = list(self.bers)
        d["groups"] = None if self.groups is None else list(self.groups)
        if d["quantity"] == "ber":  # keeps the campaign keys of BER sweeps unchanged
            del d["quantity"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CampaignConfig:
        """Rebuild a config stored by :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) - names:
            raise FormatError(f"stored campaign configuration {d!r} has unknown fields "
                              f"{sorted(set(d) - names) if isinstance(d, dict) else d!r}")
        d = dict(d)
        d["bers"] = tuple(d.get("bers", ()))
        if d.get("groups") is not None:
            d["groups"] = tuple(d["groups"])
        return cls(**d)


def check_spec(spec) -> tuple[dict, str]:
    """Validate a trial spec; return its (JSON-normalised description, model checksum)."""
    for name in ("describe", "model_checksum", "build"):
        if not callable(getattr(spec, name, None)):
            raise ConfigError(
                f"trial spec {type(spec).__name__} has no method {name}(); a spec needs "
                f"describe() -> dict, model_checksum() -> str and build() -> runner "
                f"(see numharden.campaign)")
    desc = spec.describe()
    if not isinstance(desc, dict):
        raise ConfigError(f"{type(spec).__name__}.describe() returned "
                          f"{type(desc).__name__}; expected a JSON-serialisable dict")
    try:
        desc = json.loads(canonical_json(desc))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{type(spec).__name__}.describe() is not JSON-serialisable "
                          f"({exc}); describe the spec with str/int/float/list/dict") from None
    checksum = spec.model_checksum()
    if not isinstance(checksum, str) or not checksum:
        raise ConfigError(f"{type(spec).__name__}.model_checksum() returned {checksum!r}; "
                          f"expected a non-empty str such as a SHA-256 hex digest")
    return desc, checksum


def check_trial_result(res, where: str) -> dict:
    """Validate a runner's result dict and return it with plain-int counts.

    Extra keys are kept (they must be JSON-serialisable) and stored with the record.
    """
    if not isinstance(res, dict):
        raise FormatError(f"trial runner returned {type(res).__name__} for {where}; "
                          f"expected a dict with keys {RESULT_FIELDS}")
    out = dict(res)
    for k in RESULT_FIELDS:
        v = res.get(k)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
            raise FormatError(f"trial runner result for {where} has {k}={v!r}; expected an "
                              f"int >= 0 (missing keys are not allowed: {RESULT_FIELDS})")
        out[k] = int(v)
    n = out["n_images"]
    if n < 1 or max(out["correct"], out["sdc"], out["nonfinite"]) > n \
            or out["n_masked"] > out["n_faults"]:
        raise FormatError(f"trial runner result for {where} is inconsistent: {out}; need "
                          f"n_images >= 1, correct/sdc/nonfinite <= n_images and "
                          f"n_masked <= n_faults")
    try:
        canonical_json(out)
    except (TypeError, ValueError):
        raise FormatError(f"trial runner result for {where} has values that are not "
                          f"JSON-serialisable: {out!r}") from None
    return out
