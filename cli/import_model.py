"""`numharden import`: an ONNX model or a safetensors state_dict -> numharden .h5."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from numharden.errors import ConfigError

from .common import JsonOpt, emit_json, handle_errors, out


def _floats(opt: str, text: str | None):
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{opt} expects comma-separated numbers (e.g. 0.485,0.456,0.406), "
                          f"got {text!r}") from None


def _shape(text: str | None):
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"--input expects CxHxW (e.g. 3x32x32), got {text!r}")
    return shape


def _classes(text: str | None):
    """--classes: a class count (10) or comma-separated class names."""
    if text is None:
        return None, None
    if text.strip().isdigit():
        return int(text), None
    names = [v.strip() for v in text.split(",")]
    if any(not n for n in names):
        raise ConfigError(f"--classes expects a count or comma-separated names, got {text!r}")
    return len(names), names


@handle_errors
def import_(
    source: Annotated[Path, typer.Argument(help="model.onnx or weights.safetensors.",
                                           show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="numharden model (.h5).")] = ...,
    arch: Annotated[Optional[str], typer.Option(
        help="safetensors: zoo architecture the state_dict belongs to (resnet20, ...).")] = None,
    classes: Annotated[Optional[str], typer.Option(
        help="Class count or comma-separated class names (safetensors: required).")] = None,
    input_: Annotated[Optional[str], typer.Option(
        "--input", help="Input shape CxHxW (safetensors: required; ONNX: if the file's is "
        "symbolic).")] = None,
    weight_format: Annotated[Optional[str], typer.Option(
        "--format", help="Re-encode conv/linear weights, e.g. int8/ch; default: as stored "
        "(ONNX) or fp32 (safetensors).")] = None,
    mean: Annotated[Optional[str], typer.Option(help="Input normalisation mean per channel, "
                                                "comma-separated.")] = None,
    std: Annotated[Optional[str], typer.Option(help="Input normalisation std per channel.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Import an ONNX model (float or QDQ) or a PyTorch state_dict saved with safetensors."""
    from numharden.io import from_onnx, from_safetensors, save_model

    n_classes, names = _classes(classes)
    kw = {"mean": _floats("--mean", mean), "std": _floats("--std", std)}
    suffix = source.suffix.lower()
    if suffix == ".onnx":
        if arch is not None:
            raise ConfigError("--arch is for .safetensors files; an ONNX file holds its graph")
        if n_classes is not None and names is None:
            raise ConfigError("for ONNX files --classes takes class names (the count is the "
                              "model's); e.g. --classes cat,dog")
        m = from_onnx(source, classes=names, input_shape=_shape(input_),
                      weight_format=weight_format, **kw)
    elif suffix == ".safetensors":
        if arch is None or n_classes is None or input_ is None:
            raise ConfigError("a .safetensors file holds tensors only: give --arch, --classes "
                              "and --input (e.g. --arch resnet20 --classes 10 --input 3x32x32)")
        m = from_safetensors(source, arch, num_classes=n_classes, input_shape=_shape(input_),
                             weight_format=weight_format or "fp32", classes=names, **kw)
    elif suffix in (".pt", ".pth", ".bin", ".ckpt"):
        raise ConfigError(f"{source}: pickled PyTorch files are never loaded (unpickling runs "
                          "code). Save the state_dict with safetensors.torch.save_file("
                          "model.state_dict(), 'weights.safetensors') or export ONNX")
    else:
        raise ConfigError(f"{source}: expected a .onnx or .safetensors file, found "
                          f"'{suffix or 'no suffix'}'")
    save_model(m, output)
    summary = {"output": str(output), "source": str(source), "nodes": len(m.graph.nodes),
               "params": sum(t.size for t in m.params.values()),
               "formats": sorted({t.fmt.spec for t in m.params.values()}),
               "input_shape": list(m.graph.input_shape), "num_classes": m.num_classes}
    if json_:
        emit_json(summary)
    else:
        out.print(f"wrote {output}: {summary['nodes']} nodes, {summary['params']:,} parameters "
                  f"({', '.join(summary['formats'])}), input {m.graph.input_shape}, "
                  f"{m.num_classes} classes")
