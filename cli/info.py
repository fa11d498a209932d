"""`numharden info`: graph, parameters, formats and stored bits of a model."""

from __future__ import annotations


from numharden.analysis import describe

from typing import Annotated

import typer

from .common import (JsonOpt, ModelArg, bold_lead, emit_json, handle_errors, load_model_arg, out,
                     table)


@handle_errors
def info(model: ModelArg = None, list_: Annotated[bool, typer.Option(
        "--list", help="List the built-in models instead.")] = False,
         json_: JsonOpt = False) -> None:
    """Show a model's graph, parameters, number formats and stored bits per tensor."""
    if list_:
        import numharden_weights
        names = numharden_weights.names()
        if json_:
            emit_json({"builtin": names})
        else:
            out.print("\n".join(names))
        return
    d = describe(load_model_arg(model))
    if json_:
        emit_json(d)
        return
    out.print(bold_lead("", d['arch'] or 'model',
                        f"  input {tuple(d['input_shape'])}  classes {d['num_classes']}  "
                        f"parameters {d['n_params']:,}  stored {d['stored_bits'] / 8 / 1024:.1f}"
                        f" KiB  sha256 {d['checksum'][:16]}"))
    t = table("graph", ("node", "op", "inputs", "output"))
    for n in d["nodes"]:
        t.add_row(n["name"], n["op"], ", ".join(n["inputs"]), "x".join(map(str, n["output_shape"])))
    out.print(t)
    t = table("parameters", ("tensor", "shape", "format", "bits", "stored", "scale"),
              right=("bits", "stored"))
    for p in d["params"]:
        t.add_row(p["name"], "x".join(map(str, p["shape"])) or "()", p["format"],
                  str(p["bits_per_value"]), f"{p['stored_bits']:,}", p["scale"])
    out.print(t)
    training = d["meta"].get("training")
    if training:
        out.print(f"training: {training}")
