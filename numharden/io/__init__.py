"""HDF5 model format v1 (docs/FORMAT.md): save_model, load_model, built-in model names."""

from .hdf5 import (FORMAT_NAME, FORMAT_VERSION, builtin_names, content_sha256, load_model,
                   resolve_model_path, save_model)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "builtin_names",
    "content_sha256",
    "load_model",
    "resolve_model_path",
    "save_model",
]
