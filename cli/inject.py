"""`numharden inject`: write a faulted copy of a model plus its exact fault list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import numpy as np
import typer

from numharden.errors import ConfigError

from .common import (JsonOpt, ModelArg, check_output, emit_json, err, handle_errors,
                     load_model_arg, model_label, out)


def invalid_tensors(model) -> list:
    """Names of stored tensors holding NaN/Inf values, and of activation clips that are not
    finite and > 0: what faults can do and a clean model file may not hold."""
    bad = []
    with np.errstate(all="ignore"):
        for name, st in model.params.items():
            v = st.decode()
            if not np.isfinite(v).all():
                bad.append(name)
        for node in model.graph.nodes:
            if node.op == "act_quant":
                c = model.params[node.params["clip"]].decode()
                name = node.params["clip"]
                if name not in bad and not (c > 0).all():
                    bad.append(name)
    return bad
from . import variation as V


@handle_errors
def inject(
    model: ModelArg = None,
    ber: Annotated[Optional[float], typer.Option(
        "--ber", help="Fault rate per stored bit (or per value with --per value).")] = None,
    fault: Annotated[str, typer.Option(help="flip, sa0, sa1, stuck or mix.")] = "flip",
    sa1_fraction: Annotated[Optional[float], typer.Option(min=0.0, max=1.0)] = None,
    mix: Annotated[Optional[str], typer.Option(help="With --fault mix: FLIP,SA0,SA1.")] = None,
    per: Annotated[str, typer.Option(help="'bit' or 'value'.")] = "bit",
    tensors: Annotated[Optional[List[str]], typer.Option(
        "--tensors", help="Tensor globs; default: conv/linear weights.")] = None,
    exclude: Annotated[Optional[List[str]], typer.Option()] = None,
    bits: Annotated[Optional[str], typer.Option(help="Eligible bits, e.g. '0-3' or msb.")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    faults: Annotated[Optional[Path], typer.Option(
        "--faults", help="Replay this fault list (an .h5 written by inject) instead of "
                         "sampling.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Faulted model file (.h5).")] = ...,
    faults_only: Annotated[bool, typer.Option(
        "--faults-only", help="Write only the fault list (group /faults) to -o, not the "
                              "faulted model; replay it with --faults.")] = False,
    variation: V.VariationOpt = None,
    pcm: V.PcmOpt = False,
    sigma: V.SigmaOpt = None,
    mapping: V.MappingOpt = "differential",
    g_min: V.GMinOpt = 0.0,
    g_max: V.GMaxOpt = 25.0,
    cell_bits: V.CellBitsOpt = None,
    scaling: V.ScalingOpt = "layer",
    drift_time: V.DriftTimeOpt = 0.0,
    drift_nu: V.DriftNuOpt = None,
    drift_nu_std: V.DriftNuStdOpt = 0.0,
    drift_compensation: V.DriftCompOpt = False,
    read_noise: V.ReadNoiseOpt = None,
    stuck_on: V.StuckOpt = 0.0,
    stuck_off: V.StuckOpt = 0.0,
    json_: JsonOpt = False,
) -> None:
    """Inject faults into a model's stored tensors and save the faulted model and fault list.

    The fault list is stored inside the output file (group /faults, docs/FAULTS.md), so a
    simulator can read exactly which stored bits changed."""
    from numharden.faults import FaultModel, apply_faults, inject_faults
    from numharden.faults.faulted import load_fault_list, save_fault_list, save_faulted
    from numharden.faults.model import select_names

    check_output(output, model_label(model), faults)
    m = load_model_arg(model)
    vspec = V.variation_spec(variation, pcm, sigma, mapping, g_min, g_max, cell_bits, scaling,
                             drift_time, drift_nu, drift_nu_std, drift_compensation,
                             read_noise, stuck_on, stuck_off)
    if vspec is not None:
        if faults is not None or ber is not None:
            raise ConfigError("inject writes either a faulted model (--ber/--faults) or a "
                              "varied one (--variation/--pcm/--stuck-*), not both: the fault "
                              "list would not describe fp32 effective weights")
        _varied(m, vspec, tensors, exclude, seed, output, json_)
        return
    if faults is not None:
        if ber is not None:
            raise ConfigError("give either --ber (sample new faults) or --faults (replay), not both")
        applied = apply_faults(m, load_fault_list(faults))
        source = {"replayed_from": str(faults)}
    else:
        if ber is None:
            raise ConfigError("give --ber P (e.g. 1e-4) or --faults LIST to replay")
        include = tuple(tensors or [n.params["weight"] for n in m.graph.nodes
                                    if n.op in ("conv2d", "linear")])
        mix_w = tuple(float(v) for v in mix.split(",")) if mix else None
        fm = FaultModel(rate=ber, kind=fault, sa1_fraction=sa1_fraction, mix=mix_w, per=per,
                        include=include, exclude=tuple(exclude or ()), bits=bits)
        applied = inject_faults(m, fm, np.random.default_rng(seed))
        source = {"ber": ber, "fault": fault, "per": per, "seed": seed, "bits": bits,
                  "tensors": select_names(m.params, include, tuple(exclude or ())),
                  "globs": list(tensors or ()), "exclude": list(exclude or ())}
    m.meta["faults"] = source | {"n_faults": len(applied), "n_masked": applied.n_masked}
    invalid = invalid_tensors(m)
    if faults_only:
        save_fault_list(applied, output)
    else:
        save_faulted(m, applied, output)
    if invalid and not faults_only:
        err.print((f"warning: the faulted model holds values no clean model may hold "
                         f"({', '.join(invalid)}); it is written as a faulted model file "
                         f"(FORMAT.md section 8), which numharden loads and evaluates as "
                         f"the hardware would (docs/FAULTS.md)"), style="yellow")
    summary = {"output": str(output), "faults_only": faults_only, "invalid": invalid,
               "n_faults": len(applied), "n_masked": applied.n_masked,
               "per_tensor": {name: int((applied.tensor == i).sum())
                              for i, name in enumerate(applied.names)
                              if (applied.tensor == i).any()}, **source}
    if json_:
        emit_json(summary)
    else:
        what = "fault list only" if faults_only else "faulted model; fault list in group /faults"
        out.print((f"wrote {output}: {len(applied)} faults ({applied.n_masked} masked) in "
                         f"{len(summary['per_tensor'])} tensors ({what})"))


def _vary(m, vspec, tensors, exclude, seed) -> dict:
    """Replace the targeted tensors by fp32 effective weights of one crossbar draw."""
    from numharden.crossbar import CrossbarInjector

    include = tuple(tensors or [n.params["weight"] for n in m.graph.nodes
                                if n.op in ("conv2d", "linear")])
    inj = CrossbarInjector(m, vspec, include=include, exclude=tuple(exclude or ()))
    draw = inj.draw(np.random.default_rng(seed))
    inj.apply(draw, read=0)
    info = {"spec": vspec.to_dict(), "seed": seed, "read": 0, "tensors": list(inj.names),
            "weights": "fp32 effective weights (docs/CROSSBAR.md)",
            "n_stuck_on": draw.n_stuck_on, "n_stuck_off": draw.n_stuck_off}
    m.meta["variation"] = info
    return info


def _varied(m, vspec, tensors, exclude, seed, output, json_) -> None:
    from numharden.io import save_model

    info = _vary(m, vspec, tensors, exclude, seed)
    save_model(m, output)
    if json_:
        emit_json({"output": str(output), **info})
    else:
        out.print(f"wrote {output}: {len(info['tensors'])} tensors as fp32 effective weights "
                  f"of one {vspec.programming} crossbar draw (seed {seed}), "
                  f"{info['n_stuck_on']} stuck-on / {info['n_stuck_off']} stuck-off cells")
