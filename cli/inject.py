"""`numharden inject`: write a faulted copy of a model plus its exact fault list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import numpy as np
import typer

from numharden.errors import ConfigError

from .common import JsonOpt, ModelArg, emit_json, handle_errors, load_model_arg, out


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
    json_: JsonOpt = False,
) -> None:
    """Inject faults into a model's stored tensors and save the faulted model and fault list.

    The fault list is stored inside the output file (group /faults, docs/FAULTS.md), so a
    simulator can read exactly which stored bits changed."""
    from numharden.faults import FaultModel, apply_faults, inject_faults
    from numharden.faults.faulted import load_fault_list, save_faulted

    m = load_model_arg(model)
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
                  "tensors": list(include), "exclude": list(exclude or ())}
    m.meta["faults"] = source | {"n_faults": len(applied), "n_masked": applied.n_masked}
    save_faulted(m, applied, output)
    summary = {"output": str(output), "n_faults": len(applied), "n_masked": applied.n_masked,
               "per_tensor": {name: int((applied.tensor == i).sum())
                              for i, name in enumerate(applied.names)
                              if (applied.tensor == i).any()}, **source}
    if json_:
        emit_json(summary)
    else:
        out.print(f"wrote {output}: {len(applied)} faults ({applied.n_masked} masked) in "
                  f"{len(summary['per_tensor'])} tensors; fault list in group /faults")
