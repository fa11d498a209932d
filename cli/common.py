"""Shared option types, loading helpers, output and error handling for the commands."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console

from numharden.errors import NumhardenError

out = Console()                 # tables and results
err = Console(stderr=True)      # progress and messages

ModelArg = Annotated[Optional[str], typer.Argument(
    help="Model file (.h5) or built-in name; default: the built-in 4-bit LeNet-5.",
    show_default=False)]
DataOpt = Annotated[Optional[str], typer.Option(
    "--data", help="'fashion-mnist' (bundled test split), an IDX folder, .h5 or .npz file; "
    "default: the bundled Fashion-MNIST test split.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (keys in docs/CLI.md).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Inference batch size.")]


def handle_errors(fn):
    """Turn numharden and I/O errors into one line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            from numharden import config
            config.check_environment()  # bad NUMHARDEN_* values: one line, before any work
            return fn(*args, **kwargs)
        except NumhardenError as e:
            fail(str(e))
        except (OSError, ValueError, TypeError, KeyError) as e:
            # library code validates its inputs; anything reaching here is still shown
            # as one line rather than a traceback
            fail(f"{type(e).__name__}: {e}")
        except KeyboardInterrupt:
            err.print("interrupted; everything already recorded is kept", style="yellow")
            raise typer.Exit(130)
    return wrapper


def fail(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(2)


def load_model_arg(spec: str | None):
    from numharden import config
    from numharden.io import load_model
    return load_model(spec or config.get("default_model"))


def model_label(spec: str | None) -> str:
    """The MODEL argument as given, or the built-in default it stands for."""
    from numharden import config
    return spec or config.get("default_model")


def load_data_arg(spec: str | None, split: str = "test"):
    from numharden.data import load_dataset
    return load_dataset(spec or "fashion-mnist", split=split)


def _plain(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not math.isfinite(o) else float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _finite(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def emit_json(obj) -> None:
    """Print ``obj`` as one JSON object on stdout (NaN/Inf become null)."""
    sys.stdout.write(json.dumps(_finite(obj), default=_plain, sort_keys=False) + "\n")


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def check_output(output, *inputs, what: str = "-o") -> Path:
    """Refuse an output path that would destroy an input or cannot be written, before any
    work is done.

    ``inputs`` are model specs (paths or built-in names), data specs or other files the
    command reads; None entries are skipped. The output is refused when it resolves to
    the same file as any of them (also through a symlink or another spelling such as
    ``./m.h5``), when it is a directory, or when its folder does not exist or is not
    writable.
    """
    from numharden.errors import ConfigError
    from numharden.io.hdf5 import resolve_model_path

    out_path = Path(output)
    shown = str(output)
    if out_path.is_dir():
        raise ConfigError(f"{what} {shown!r} is a directory; give a file path such as "
                          f"{str(out_path / 'model.h5')!r}")
    for spec in inputs:
        if spec is None:
            continue
        candidates = [Path(spec)]
        try:
            candidates.append(resolve_model_path(spec))
        except Exception:  # not a model spec: a data file or folder
            pass
        for c in candidates:
            if c.exists() and out_path.exists() and os.path.samefile(c, out_path):
                raise ConfigError(f"{what} {shown!r} is the same file as the input "
                                  f"{str(spec)!r}; writing it would replace the input. "
                                  f"Choose another output name")
    parent = out_path.parent if str(out_path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"{what} {shown!r}: folder {str(parent)!r} does not exist; create "
                          f"it first or choose another path")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{what} {shown!r}: folder {str(parent)!r} is not writable; choose "
                          f"another path")
    return out_path
