"""Per-(group, BER) summaries of a campaign store, and vulnerability ranking.

Every row treats the *trial* as the statistical unit (see
:mod:`numharden.campaign.stats`): per-trial accuracy, SDC rate and NaN/Inf rate are
averaged over the cell's trials with a Student-t interval, or the distribution-free
bound when there is a single trial or all trials agree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..errors import ConfigError
from .plan import BASELINE, cell_trials, trial_accuracy
from .spec import CampaignConfig
from .stats import Interval, mean_interval

__all__ = ["CellSummary", "CampaignResult", "summarize", "summarize_records",
           "rank_groups"]


@dataclass(frozen=True)
class CellSummary:
    """Statistics of one (group, BER) cell; ``asdict``-ready for JSON.

    Attributes
    ----------
    group : str, int or None
        Breakdown key (layer name, bit index) or None.
    ber : float
    trials : int
        Trials summarised (trial indices below the cell's decided count that are stored).
    planned : int
        Trials the stopping rule has decided on so far.
    complete : bool
        All planned trials are stored and the stopping rule is satisfied.
    mean_acc, ci_lo, ci_hi, half_width : float
        Mean top-1 accuracy over trials and its interval (half-width unclipped).
    acc_drop, drop_ci_lo, drop_ci_hi : float or None
        Fault-free accuracy minus mean accuracy, with interval (None without baseline).
    sdc_rate, sdc_ci_lo, sdc_ci_hi : float
        Mean fraction of images whose top-1 differs from the fault-free prediction.
    nonfinite_rate, nonfinite_ci_lo, nonfinite_ci_hi : float
        Mean fraction of images with a NaN/Inf output.
    mean_faults, mean_masked : float
        Mean injected faults per trial, and mean of those reported masked.
    interval : str
        Method of the accuracy interval: ``'t'``, ``'bound'`` (distribution-free, see
        :mod:`numharden.campaign.stats`) or ``'exact'`` (BER 0: no fault can occur).
    """

    group: object
    ber: float
    trials: int
    planned: int
    complete: bool
    mean_acc: float
    ci_lo: float
    ci_hi: float
    half_width: float
    acc_drop: float | None
    drop_ci_lo: float | None
    drop_ci_hi: float | None
    sdc_rate: float
    sdc_ci_lo: float
    sdc_ci_hi: float
    nonfinite_rate: float
    nonfinite_ci_lo: float
    nonfinite_ci_hi: float
    mean_faults: float
    mean_masked: float
    interval: str

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


@dataclass
class CampaignResult:
    """What a campaign measured.

    Attributes
    ----------
    config : CampaignConfig
    campaign_key : str
    spec : dict
        The trial spec's description.
    model_checksum : str
    baseline_acc : float or None
        Fault-free accuracy (None until the baseline trial is stored).
    rows : list of CellSummary
        One per (group, BER) cell with at least one stored trial, canonical order.
    complete : bool
        Every cell is complete and the baseline is stored.
    n_records : int
        Distinct trials in the store.
    store : str
        Path of the store directory.
    torn : list of str
        Record files whose damaged last line was skipped when reading.
    """

    config: CampaignConfig
    campaign_key: str
    spec: dict
    model_checksum: str
    baseline_acc: float | None
    rows: list = field(default_factory=list)
    complete: bool = False
    n_records: int = 0
    store: str = ""
    torn: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict of everything (configuration, baseline, rows)."""
        return {"campaign_key": self.campaign_key, "config": self.config.to_dict(),
                "spec": self.spec, "model_checksum": self.model_checksum,
                "baseline_acc": self.baseline_acc, "complete": self.complete,
                "n_records": self.n_records, "store": self.store, "torn": list(self.torn),
                "rows": [r.to_dict() for r in self.rows], **self._quantity()}

    def _quantity(self) -> dict:
        """Name and unit of the swept quantity (rows keep the key ``ber`` for its level)."""
        from .spec import QUANTITY_LABELS
        label, unit, _ = QUANTITY_LABELS[self.config.quantity]
        return {"quantity": {"name": self.config.quantity, "label": label, "unit": unit}}

    def rows_for(self, group=None) -> list:
        """Rows of one group (None for an ungrouped campaign), in BER order."""
        return [r for r in self.rows if r.group == group]

    def groups(self) -> list:
        """Groups that have rows, in configuration order."""
        seen = []
        for r in self.rows:
            if r.group not in seen:
                seen.append(r.group)
        return seen


def _interval(values, confidence, ber) -> Interval:
    """:func:`mean_interval`, except that at BER 0 (no fault possible) equal trials are
    exactly the fault-free value."""
    if ber == 0.0 and all(v == values[0] for v in values):
        return Interval(values[0], values[0], values[0], 0.0, len(values), "exact")
    return mean_interval(values, confidence)


def _cell_summary(config, group, ber, recs, baseline_acc) -> CellSummary | None:
    planned, complete = cell_trials(config, ber, recs)
    used = [recs[t] for t in sorted(recs) if t < planned]
    if not used:
        return None
    c = config.confidence
    acc, sdc, nan = (_interval([f(r) for r in used], c, ber) for f in (
        trial_accuracy, lambda r: r["sdc"] / r["n_images"],
        lambda r: r["nonfinite"] / r["n_images"]))
    if baseline_acc is None:
        drop = lo = hi = None
    else:
        drop, lo, hi = baseline_acc - acc.mean, baseline_acc - acc.hi, baseline_acc - acc.lo
    n = len(used)
    return CellSummary(
        group=group, ber=ber, trials=n, planned=planned, complete=complete,
        mean_acc=acc.mean, ci_lo=acc.lo, ci_hi=acc.hi, half_width=acc.half_width,
        acc_drop=drop, drop_ci_lo=lo, drop_ci_hi=hi,
        sdc_rate=sdc.mean, sdc_ci_lo=sdc.lo, sdc_ci_hi=sdc.hi,
        nonfinite_rate=nan.mean, nonfinite_ci_lo=nan.lo, nonfinite_ci_hi=nan.hi,
        mean_faults=math.fsum(r["n_faults"] for r in used) / n,
        mean_masked=math.fsum(r["n_masked"] for r in used) / n, interval=acc.method)


def summarize_records(config: CampaignConfig, records: dict) -> tuple[float | None, list, bool]:
    """Baseline accuracy, rows and completeness from ``(group, ber, trial) -> record``."""
    base = records.get(BASELINE)
    baseline_acc = None if base is None else trial_accuracy(base)
    by_cell = {c: {} for c in config.cells()}
    for (g, b, t), rec in records.items():
        if (g, b) in by_cell:
            by_cell[(g, b)][t] = rec
    rows, complete = [], base is not None
    for (g, b), recs in by_cell.items():
        row = _cell_summary(config, g, b, recs, baseline_acc)
        complete = complete and row is not None and row.complete
        if row is not None:
            rows.append(row)
    return baseline_acc, rows, complete


def summarize(store, config: CampaignConfig | None = None) -> CampaignResult:
    """Summarise a :class:`~numharden.campaign.store.CampaignStore` (or its path).

    ``config`` gives the plan to report (its BERs and trial counts; the run that asked
    for it); default the store's header, which covers every plan run into the store."""
    from .store import CampaignStore
    if not isinstance(store, CampaignStore):
        store = CampaignStore.open(store)
    config = store.config if config is None else config
    loaded = store.load()
    baseline_acc, rows, complete = summarize_records(config, loaded.records)
    h = store.header
    return CampaignResult(config=config, campaign_key=store.key, spec=h["spec"],
                          model_checksum=h["model_checksum"], baseline_acc=baseline_acc,
                          rows=rows, complete=complete, n_records=len(loaded.records),
                          store=str(store.path), torn=list(loaded.torn))


def rank_groups(result: CampaignResult, ber: float | None = None) -> list:
    """Rank breakdown groups from most to least vulnerable.

    Parameters
    ----------
    result : CampaignResult
        A campaign with ``groups``.
    ber : float, optional
        Rank by the accuracy drop at this BER (with its interval). Default: the only BER,
        or, with several, the mean drop over the BERs (no interval).

    Returns
    -------
    list of dict
        ``{'rank', 'group', 'acc_drop', 'drop_ci_lo', 'drop_ci_hi', 'sdc_rate',
        'trials'}``, sorted by ``acc_drop`` descending (ties keep configuration order).
    """
    if result.config.groups is None:
        raise ConfigError("rank_groups needs a breakdown campaign (groups=..., e.g. "
                          "--per-layer or --per-bit); this campaign has no groups")
    if result.baseline_acc is None:
        raise ConfigError(f"campaign {result.store} has no fault-free baseline trial yet; "
                          f"resume it so the baseline is measured, then rank")
    bers = result.config.bers
    if ber is not None:
        ber = float(ber) + 0.0
        if ber not in bers:
            raise ConfigError(f"ber={ber!r} is not one of this campaign's rates {list(bers)}")
        bers = (ber,)
    out = []
    for g in result.config.groups:
        rows = [r for r in result.rows_for(g) if r.ber in bers]
        if not rows:
            continue
        one = rows[0] if len(bers) == 1 else None
        out.append({
            "group": g,
            "acc_drop": math.fsum(r.acc_drop for r in rows) / len(rows),
            "drop_ci_lo": one.drop_ci_lo if one else None,
            "drop_ci_hi": one.drop_ci_hi if one else None,
            "sdc_rate": math.fsum(r.sdc_rate for r in rows) / len(rows),
            "trials": sum(r.trials for r in rows)})
    out.sort(key=lambda d: -d["acc_drop"])  # stable: ties keep configuration order
    for i, d in enumerate(out, 1):
        d["rank"] = i
    return out
