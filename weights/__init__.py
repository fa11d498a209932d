"""Built-in numharden models (HDF5 files trained by numharden; see README.md here)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """Path of built-in model ``name`` (file stem, e.g. ``lenet5-fmnist-w4a4``)."""
    return HERE / f"{name}.h5"


def names() -> list[str]:
    """Stems of the built-in model files, sorted."""
    return sorted(p.stem for p in HERE.glob("*.h5"))
