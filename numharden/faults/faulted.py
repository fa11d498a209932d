"""Faulted model files: the model as stored after the faults, plus its fault list."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py

from ..errors import ConfigError
from .faultlist import FaultList


def save_faulted(model, applied: FaultList, path) -> Path:
    """Write ``model`` (already faulted) and the applied fault list to ``path`` atomically.

    The file is a valid model file (docs/FORMAT.md) with an extra group ``/faults``
    holding ``applied`` (docs/FAULTS.md); it is completed in a temporary file in the same
    folder, fsynced and renamed, so an interrupted run never leaves a half-written file.
    """
    from ..io import save_model

    path = Path(path)
    if not applied.applied:
        raise ConfigError("save_faulted needs the fault list returned by applying the faults "
                          "(with old and new codes), not a merely sampled one")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_model(model, tmp)
        with h5py.File(tmp, "a") as f:
            applied.save(f.create_group("faults"))
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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
