"""HDF5 model format v1 (docs/FORMAT.md): save_model, load_model, built-in model names;
ONNX import/export and safetensors import (docs/ONNX.md; optional extras)."""

from .onnx_export import to_onnx
from .onnx_import import from_onnx
from .safetensors_import import from_safetensors
from .hdf5 import (FORMAT_NAME, FORMAT_VERSION, builtin_names, content_sha256, load_model,
                   resolve_model_path, save_model)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "builtin_names",
    "content_sha256",
    "from_onnx",
    "from_safetensors",
    "load_model",
    "resolve_model_path",
    "save_model",
    "to_onnx",
]
