"""Faulted model files: the model as stored after the faults, plus its fault list."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py

from ..errors import ConfigError
from .faultlist import FaultList


def _write_atomically(path: Path, fill) -> Path:
    """Complete a file in a temporary file of the same folder (``fill(tmp_path)``), fsync
    it and rename it over ``path``: an interrupted run never leaves a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fill(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _check_applied(applied: FaultList) -> None:
    if not applied.applied:
        raise ConfigError("saving a fault list needs the list returned by applying the faults "
                          "(with old and new codes), not a merely sampled one")


def save_faulted(model, applied: FaultList, path) -> Path:
    """Write ``model`` (already faulted) and the applied fault list to ``path`` atomically.

    The file is a faulted model file (docs/FORMAT.md section 8): a model file with an
    extra group ``/faults`` holding ``applied`` (docs/FAULTS.md). Float codes turned into
    NaN/Inf and activation clips turned non-positive by the faults are kept as they are.
    """
    from ..io import save_model

    _check_applied(applied)

    def fill(tmp):
        save_model(model, tmp, faulted=True)
        with h5py.File(tmp, "a") as f:
            applied.save(f.create_group("faults"))

    return _write_atomically(Path(path), fill)


def save_fault_list(applied: FaultList, path) -> Path:
    """Write only the fault list (group ``/faults``, docs/FAULTS.md) to ``path``,
    atomically: what a hardware testbench needs to reproduce a trial, without the model.
    It replays with :func:`load_fault_list` / ``numharden inject --faults``."""
    _check_applied(applied)

    def fill(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = "numharden-faultlist"
            applied.save(f.create_group("faults"))

    return _write_atomically(Path(path), fill)


def load_fault_list(path) -> FaultList:
    """The fault list stored in group ``/faults`` of a file written by :func:`save_faulted`."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "faults" not in f:
                raise ConfigError(f"{path} has no /faults group; give a file written by "
                                  "`numharden inject` (docs/FAULTS.md)")
            return FaultList.load(f["faults"])
    except OSError as e:
        raise ConfigError(f"cannot read fault list from {path}: {e}") from None
