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

# No markup parsing: messages and table cells echo user text (paths, tensor names, globs)
# in which Rich would swallow "[plot]"-like spans. Styling goes through style= / Text.
out = Console(markup=False, highlight=False)               # tables and results
err = Console(stderr=True, markup=False, highlight=False)  # progress and messages
_noted: set = set()


def note_once(key: str, message: str) -> None:
    """Print ``note: message`` on stderr the first time ``key`` is seen in this process."""
    if key not in _noted:
        _noted.add(key)
        err.print(f"note: {message}")


def plots_unavailable() -> None:
    """Plots were not asked for and matplotlib is missing: say how to get them, once."""
    note_once("plots", "plots need matplotlib: pip install 'numharden[plot]' (every result "
                       "is complete without them)")


def table(title: str, columns, right=()) -> "Table":
    """A Rich table that stays readable at 80 columns: light box, cells fold instead of
    being cut with an ellipsis. ``right``: columns to right-justify (numbers)."""
    from rich import box
    from rich.table import Table
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for c in columns:  # numbers never wrap; text columns (names) fold where needed
        t.add_column(c, justify="right" if c in right else "left", overflow="fold",
                     no_wrap=c in right, min_width=len(c) if c in right else None)
    return t


def pm(lo, hi, mean) -> str:
    """``±h`` in percentage points, h the larger side of the interval around ``mean``."""
    if lo is None or hi is None or mean is None:
        return "-"
    return f"±{100 * max(mean - lo, hi - mean):.2f}"


def bold_lead(*parts) -> "Text":
    """A line whose odd-numbered parts are bold: bold_lead('accuracy ', '91 %', ' ...')."""
    from rich.text import Text
    return Text.assemble(*[(p, "bold" if i % 2 else "") for i, p in enumerate(parts)])

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
            _check_finite_options(kwargs)
            return fn(*args, **kwargs)
        except NumhardenError as e:
            fail(str(e))
        except OSError as e:
            if e.filename is not None:  # name the path and the reason, not the exception
                fail(f"cannot use {str(e.filename)!r}: {e.strerror or e}; check the path")
            fail(f"{type(e).__name__}: {e}")
        except (ValueError, TypeError, KeyError) as e:
            # library code validates its inputs; anything reaching here is still shown
            # as one line rather than a traceback
            fail(f"{type(e).__name__}: {e}")
        except KeyboardInterrupt:
            err.print("interrupted; everything already recorded is kept", style="yellow")
            raise typer.Exit(130)
    return wrapper


def _check_finite_options(kwargs: dict) -> None:
    """No numeric option takes NaN or Inf (Click's range checks let NaN through)."""
    from numharden.errors import ConfigError
    for name, v in kwargs.items():
        values = v if isinstance(v, (list, tuple)) else [v]
        for x in values:
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"--{name.rstrip('_').replace('_', '-')} {x}: give a finite "
                                  f"number")


def one_line_usage_error(exc) -> str:
    """A Click usage/parameter error as one ``error:`` line with a pointer to --help."""
    msg = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"error: {msg}{where}\n"


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
