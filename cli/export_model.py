"""`numharden export`: a numharden model (as stored, faults included) -> ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOpt, ModelArg, emit_json, handle_errors, load_model_arg, out


@handle_errors
def export(
    model: ModelArg = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="ONNX file to write.")] = ...,
    float_: Annotated[bool, typer.Option(
        "--float", help="Export every tensor as decoded float32 (default: 8-bit integer "
        "weights as QDQ).")] = False,
    opset: Annotated[int, typer.Option(min=13, help="ONNX opset.")] = 13,
    json_: JsonOpt = False,
) -> None:
    """Export a model to ONNX exactly as stored (faulted/varied tensors included).

    int8/uint8 tensors become int8/uint8 initializers read by DequantizeLinear; other
    formats are written as their decoded float values with the format in the metadata."""
    from numharden.io import to_onnx

    m = load_model_arg(model)
    to_onnx(m, output, qdq=not float_, opset=opset)
    qdq = sorted(n for n, t in m.params.items()
                 if not float_ and t.fmt.bits == 8 and t.fmt.kind in ("int", "affine"))
    summary = {"output": str(output), "opset": opset, "qdq_tensors": len(qdq),
               "float_tensors": len(m.params) - len(qdq)}
    if json_:
        emit_json(summary)
    else:
        out.print(f"wrote {output}: {len(qdq)} tensors as QDQ int8/uint8, "
                  f"{summary['float_tensors']} as float32 (opset {opset})")
