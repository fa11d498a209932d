"""`numharden sweep`: Monte-Carlo fault campaign over bit-error rates, with intervals."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, List, Optional

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from numharden.errors import ConfigError

from .common import (DataOpt, JsonOpt, ModelArg, bold_lead, emit_json, err, handle_errors, out,
                     pct, plots_unavailable, pm, table)
from . import variation as V

FaultOpt = Annotated[str, typer.Option("--fault", help="flip, sa0, sa1, stuck (SA0/SA1 mix "
                                                       "by --sa1-fraction) or mix.")]


def parse_bers(bers: list[float] | None, ber_range: str | None) -> list[float]:
    """BERs from repeated --ber and/or --ber-range LO:HI:N (log-spaced, inclusive)."""
    values = [float(b) for b in (bers or [])]
    if ber_range:
        try:
            lo, hi, n = ber_range.split(":")
            lo, hi, n = float(lo), float(hi), int(n)
        except ValueError:
            raise ConfigError(f"--ber-range {ber_range!r} must be LO:HI:N, e.g. 1e-6:1e-3:7") from None
        if not (0 < lo <= hi <= 1) or n < 1:
            raise ConfigError(f"--ber-range {ber_range!r}: need 0 < LO <= HI <= 1 and N >= 1")
        values += [float(v) for v in np.geomspace(lo, hi, n)] if n > 1 else [lo]
    if not values:
        raise ConfigError("give at least one bit-error rate: --ber 1e-5 (repeatable) or "
                          "--ber-range 1e-6:1e-3:7")
    for b in values:
        if not (math.isfinite(b) and 0.0 <= b <= 1.0):
            raise ConfigError(f"bit-error rate {b!r} is outside [0, 1]; a BER is a "
                              "probability per stored bit, e.g. 1e-5")
    return list(dict.fromkeys(values))


def _linear_range(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        lo, hi, n = text.split(":")
        lo, hi, n = float(lo), float(hi), int(n)
    except ValueError:
        raise ConfigError(f"--sigma-range {text!r} must be LO:HI:N, e.g. 0.1:0.5:5") from None
    if not (0 <= lo <= hi) or n < 1 or not math.isfinite(hi):
        raise ConfigError(f"--sigma-range {text!r}: need 0 <= LO <= HI and N >= 1")
    return [float(v) for v in np.linspace(lo, hi, n)] if n > 1 else [lo]


def _variation_sweep(common: dict, swept: dict, ber, ber_range, opts: dict):
    """(VariationSweepSpec, levels, quantity): the swept quantity is the first of sigma,
    drift time, stuck-on, stuck-off given more than once (else the first given, else the
    BER); every other option holds one value."""
    from numharden.campaign.variation import VariationSweepSpec

    many = [q for q, v in swept.items() if len(v) > 1]
    given = [q for q, v in swept.items() if v]
    if len(many) > 1:
        raise ConfigError(f"sweep one quantity at a time; several values given for "
                          f"{', '.join('--' + q.replace('_', '-') for q in many)}")
    bers = parse_bers(ber, ber_range) if (ber or ber_range) else []
    quantity = many[0] if many else (given[0] if given else "ber")
    if quantity != "ber" and len(bers) > 1:
        raise ConfigError(f"sweeping {quantity} with a fixed BER: give one --ber, not {len(bers)}")
    fixed = {q: v[0] for q, v in swept.items() if v and q != quantity}
    vspec = V.variation_spec(opts["variation"], opts["pcm"], fixed.get("sigma"),
                             opts["mapping"], opts["g_min"], opts["g_max"],
                             opts["cell_bits"], opts["scaling"], fixed.get("drift_time", 0.0),
                             opts["drift_nu"], opts["drift_nu_std"],
                             opts["drift_compensation"], opts["read_noise"],
                             fixed.get("stuck_on", 0.0), fixed.get("stuck_off", 0.0))
    if vspec is None:
        from numharden.crossbar import VariationSpec
        vspec = VariationSpec(programming=opts["variation"] or "none")
    levels = bers if quantity == "ber" else list(dict.fromkeys(swept[quantity]))
    if not levels:
        raise ConfigError("give the levels to sweep: --sigma (repeatable), --sigma-range, "
                          "--drift-time, --stuck-on/--stuck-off or --ber")
    spec = VariationSweepSpec(**common, variation=vspec.to_dict(), quantity=quantity,
                              fixed_ber=bers[0] if bers and quantity != "ber" else 0.0)
    if 0.0 in levels and not spec.clean_at_zero():
        raise ConfigError(f"{quantity} = 0 is the fault-free baseline of the campaign "
                          f"protocol, but other non-idealities are on there; leave 0 out "
                          f"(the baseline is always measured)")
    for lv in levels:
        spec.level_spec(lv)  # validate every level now, with the user's words
    return spec, levels, quantity


def default_out(spec, cfg, checksum: str) -> Path:
    """A store folder named after the campaign's identity (not its plan), so the same
    command resumes it and one with more trials or BERs extends it. A folder named the
    way earlier versions did (plan included) is used when it exists."""
    from numharden.campaign.store import identity_config, identity_spec

    def name(config: dict) -> Path:
        blob = json.dumps({"spec": identity_spec(spec.describe()), "config": config,
                           "model": checksum}, sort_keys=True, default=str)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        return Path("numharden-runs") / f"sweep-{Path(spec.model).stem}-{digest}"
    new, old = name(identity_config(cfg.to_dict())), name(cfg.to_dict())
    return old if old.is_dir() and not new.exists() else new


@handle_errors
def sweep(
    model: ModelArg = None,
    ber: Annotated[Optional[List[float]], typer.Option(
        "--ber", help="Bit-error rate (probability per stored bit); repeatable.")] = None,
    ber_range: Annotated[Optional[str], typer.Option(
        help="LO:HI:N log-spaced BERs, e.g. 1e-6:1e-3:7.")] = None,
    fault: FaultOpt = "flip",
    sa1_fraction: Annotated[Optional[float], typer.Option(min=0.0, max=1.0,
                                                          help="With --fault stuck.")] = None,
    mix: Annotated[Optional[str], typer.Option(help="With --fault mix: weights FLIP,SA0,SA1.")] = None,
    per: Annotated[str, typer.Option(help="Rate per stored 'bit' (BER) or per 'value'.")] = "bit",
    target: Annotated[str, typer.Option(help="weights or activations.")] = "weights",
    tensors: Annotated[Optional[List[str]], typer.Option(
        "--tensors", help="Tensor (or node, for activations) globs to fault; default: the "
                          "conv/linear weights, or the quantised activations.")] = None,
    exclude: Annotated[Optional[List[str]], typer.Option(help="Globs to leave fault-free.")] = None,
    bits: Annotated[Optional[str], typer.Option(
        help="Eligible bits: ranges '0-3,7' or sign/exponent/mantissa/msb/lsb.")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Trials per BER (minimum with --ci-width).")] = 100,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    ci_width: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="Add trials until the 95 % interval half-width is at most W.")] = None,
    max_trials: Annotated[Optional[int], typer.Option(min=1, help="Cap with --ci-width.")] = None,
    per_layer: Annotated[bool, typer.Option(help="Fault one layer at a time; rank layers.")] = False,
    per_bit: Annotated[bool, typer.Option(help="Fault one bit position at a time; rank bits.")] = False,
    data: DataOpt = None,
    images: Annotated[Optional[int], typer.Option(min=1, help="Use the first N test images.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1)] = None,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="Result store folder (resumable); default numharden-runs/sweep-...")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Local worker processes.")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address.")] = None,
    connect_timeout: Annotated[Optional[float], typer.Option(
        min=0.001, max=3600.0, help="Seconds to wait for the Dask scheduler (default 5, "
                                    "or NUMHARDEN_CONNECT_TIMEOUT).")] = None,
    shard: Annotated[Optional[str], typer.Option(help="Run only shard i/n (merge later).")] = None,
    plot: Annotated[Optional[bool], typer.Option(
        "--plot/--no-plot", help="Write sweep.png/.svg (needs the 'plot' extra); default: "
                                 "when matplotlib is installed.")] = None,
    variation: V.VariationOpt = None,
    pcm: V.PcmOpt = False,
    sigma: Annotated[Optional[List[float]], typer.Option(
        "--sigma", min=0.0, help="Programming sigma; repeatable (swept).")] = None,
    sigma_range: Annotated[Optional[str], typer.Option(
        help="LO:HI:N linearly spaced sigmas, e.g. 0.1:0.5:5.")] = None,
    mapping: V.MappingOpt = "differential",
    g_min: V.GMinOpt = 0.0,
    g_max: V.GMaxOpt = 25.0,
    cell_bits: V.CellBitsOpt = None,
    scaling: V.ScalingOpt = "layer",
    drift_time: Annotated[Optional[List[float]], typer.Option(
        "--drift-time", min=0.0, help="Seconds since programming; repeatable (swept).")] = None,
    drift_nu: V.DriftNuOpt = None,
    drift_nu_std: V.DriftNuStdOpt = 0.0,
    drift_compensation: V.DriftCompOpt = False,
    read_noise: V.ReadNoiseOpt = None,
    stuck_on: Annotated[Optional[List[float]], typer.Option(
        "--stuck-on", min=0.0, max=1.0, help="Stuck-on cell rate; repeatable (swept).")] = None,
    stuck_off: Annotated[Optional[List[float]], typer.Option(
        "--stuck-off", min=0.0, max=1.0, help="Stuck-off cell rate; repeatable (swept).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Monte-Carlo campaign: accuracy vs bit-error rate or crossbar variation, with CIs."""
    from numharden.campaign import CampaignConfig, parse_shard, rank_groups, run_campaign
    from numharden.campaign.engine import FaultSweepSpec
    from numharden import config as nh_config

    if per_layer and per_bit:
        raise ConfigError("choose one breakdown: --per-layer or --per-bit")
    mix_w = None
    if mix:
        try:
            mix_w = tuple(float(v) for v in mix.split(","))
        except ValueError:
            raise ConfigError(f"--mix {mix!r} must be three numbers FLIP,SA0,SA1") from None
    common = dict(model=model or nh_config.get("default_model"), data=data or "fashion-mnist",
                  images=images, target=target, kind=fault, sa1_fraction=sa1_fraction,
                  mix=mix_w, per=per, bits=bits, include=tuple(tensors or ()),
                  exclude=tuple(exclude or ()),
                  group_by="layer" if per_layer else "bit" if per_bit else None,
                  batch_size=batch_size)
    sigmas = list(sigma or []) + _linear_range(sigma_range)
    swept = {"sigma": sigmas, "drift_time": list(drift_time or []),
             "stuck_on": list(stuck_on or []), "stuck_off": list(stuck_off or [])}
    if variation is None and not pcm and not any(swept.values()) and V.variation_spec(
            None, False, None, mapping, g_min, g_max, cell_bits, scaling, 0.0, drift_nu,
            drift_nu_std, drift_compensation, read_noise, 0.0, 0.0) is None:
        spec = FaultSweepSpec(**common)
        levels, quantity = parse_bers(ber, ber_range), "ber"
    else:
        spec, levels, quantity = _variation_sweep(common, swept, ber, ber_range, dict(
            variation=variation, pcm=pcm, mapping=mapping, g_min=g_min, g_max=g_max,
            cell_bits=cell_bits, scaling=scaling, drift_nu=drift_nu,
            drift_nu_std=drift_nu_std, drift_compensation=drift_compensation,
            read_noise=read_noise))
    _, evaluated = spec.loaded()
    if images is not None and images > len(evaluated):
        err.print((f"note: --images {images} is more than the {len(evaluated)} images of "
                   f"{evaluated.name}; using all {len(evaluated)}"))
    cfg = CampaignConfig(bers=levels, trials=trials, seed=seed, quantity=quantity,
                         ci_width=ci_width, max_trials=max_trials, groups=spec.groups())
    checksum = spec.model_checksum()
    store = out_dir or default_out(spec, cfg, checksum)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(f"{_level_label(cfg.quantity)} {{task.fields[ber]}}  acc {{task.fields[acc]}}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=err, disable=json_ or not err.is_terminal,
                  transient=True) as bar:
        task = bar.add_task("trials", total=None, ber="-", acc="-")

        def progress(p):
            bar.update(task, completed=p.done, total=p.planned, ber=f"{p.ber:.3g}",
                       acc=pct(p.accuracy))
        result = run_campaign(spec, cfg, store, workers=workers, scheduler=scheduler,
                              shard=parse_shard(shard) if shard else None, progress=progress,
                              connect_timeout=connect_timeout)
    d = result.to_dict()
    d["images"] = len(evaluated)
    if cfg.groups is not None and result.baseline_acc is not None:
        d["ranking"] = rank_groups(result)
    d["plots"] = _plot(result, Path(store), plot, json_)
    if json_:
        emit_json(d)
        return
    _table(result, d.get("ranking"))
    out.print(f"results: {store}" + (f"  plots: {', '.join(d['plots'])}" if d["plots"] else ""))


def _plot(result, store: Path, plot: bool | None, quiet: bool) -> list:
    if plot is False or not result.rows:
        return []
    from numharden.campaign import plot_sweep
    try:
        return [str(p) for p in plot_sweep(result, store / "sweep")]
    except ConfigError:
        if plot:  # explicitly requested: an error
            raise
        if not quiet:
            plots_unavailable()
        return []


def _level_label(quantity: str) -> str:
    from numharden.campaign.spec import QUANTITY_LABELS
    label, unit, _ = QUANTITY_LABELS[quantity]
    return "BER" if quantity == "ber" else label + (f" ({unit})" if unit else "")


def _table(result, ranking) -> None:
    base = result.baseline_acc
    out.print(bold_lead("fault-free accuracy: ", pct(base),
                        f"  model sha256 {result.model_checksum[:16]}"))
    cols = (["group"] if result.config.groups is not None else []) + [
        _level_label(result.config.quantity), "n", "acc%", "±95%", "drop", "SDC%", "±95%", "NaN%", "faults"]
    t = table("accuracy under faults: n trials, rates in % and points, ±95% = half-width "
              "of the 95 % interval over trials", cols, right=cols[-9:])
    for r in result.rows:
        row = [] if result.config.groups is None else [str(r.group)]
        row += [f"{r.ber:.3g}", str(r.trials), f"{100 * r.mean_acc:.2f}",
                pm(r.ci_lo, r.ci_hi, r.mean_acc),
                "-" if r.acc_drop is None else f"{100 * r.acc_drop:.2f}",
                f"{100 * r.sdc_rate:.2f}", pm(r.sdc_ci_lo, r.sdc_ci_hi, r.sdc_rate),
                f"{100 * r.nonfinite_rate:.2f}", f"{r.mean_faults:.1f}"]
        t.add_row(*row)
    out.print(t)
    if ranking:
        t = table("most vulnerable first (accuracy drop in points)",
                  ("rank", "group", "drop", "95% CI", "SDC %"), right=("rank", "drop", "SDC %"))
        for g in ranking[:20]:
            ci = "-" if g.get("drop_ci_lo") is None else \
                f"{100 * g['drop_ci_lo']:.2f}..{100 * g['drop_ci_hi']:.2f}"
            t.add_row(str(g["rank"]), str(g["group"]), f"{100 * g['acc_drop']:.2f}", ci,
                      f"{100 * g['sdc_rate']:.2f}")
        out.print(t)
