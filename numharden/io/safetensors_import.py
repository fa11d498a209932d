"""PyTorch ``state_dict`` tensors saved with ``safetensors`` -> a zoo Model.

The file is read with ``safetensors.numpy`` (no PyTorch, nothing unpickled). Tensor
names are PyTorch's (``layer1.0.conv1.weight``), which the zoo uses as parameter names;
``num_batches_tracked`` buffers are ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, FormatError, MissingTensorError, ShapeError
from ..formats import parse_format
from ..graph import Model
from .onnx_import import _options_meta, requantize

_IGNORED = ("num_batches_tracked",)


def _read(path: str) -> dict:
    try:
        from safetensors.numpy import load_file
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ConfigError("reading .safetensors files needs the 'safetensors' package; "
                          "install it with pip install 'numharden[safetensors]'") from e
    if not Path(path).is_file():
        raise FormatError(f"{path}: no such safetensors file")
    try:
        return load_file(path)
    except Exception as e:
        raise FormatError(f"{path}: not a readable safetensors file ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'no detail'}); save it "
                          "with safetensors.torch.save_file(model.state_dict(), path)") from None


def from_safetensors(path, arch: str, *, num_classes: int = 10, input_shape=(3, 32, 32),
                     weight_format: str = "fp32", abits: int | None = None,
                     mean=None, std=None, classes=None) -> Model:
    """Load a zoo architecture's weights from a safetensors ``state_dict``.

    Parameters
    ----------
    path : str or Path
    arch : str
        Zoo architecture (``lenet5, resnet20, resnet20a, resnet18, mobilenetv2, densenet``).
    num_classes : int
    input_shape : tuple of int
        (C, H, W).
    weight_format : str
        Storage format of conv/linear weights after import (``'int8/ch'`` quantizes with
        scales from the weights); batch norm, biases stay fp32.
    abits : int, optional
        Activation quantisers as in the zoo (clips start at the zoo's defaults).
    mean, std, classes : optional
        Normalisation and class names stored in the model's metadata.

    Raises
    ------
    FormatError, MissingTensorError, ShapeError, DTypeError
        Unreadable file; a tensor the architecture needs is missing, extra, misshapen or
        not finite (named, with both shapes).
    """
    from ..models.zoo import build
    path = str(path)
    tensors = _read(path)
    model = build(arch, input_shape=tuple(input_shape), num_classes=num_classes, abits=abits,
                  weight_format="fp32")
    want = {k for k in model.params if not k.endswith(".clip")}
    have = {k for k in tensors if not k.endswith(_IGNORED)}
    missing, extra = sorted(want - have), sorted(have - want)
    if missing or extra:
        raise MissingTensorError(
            f"{path}: tensors do not match architecture {arch!r}: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
            f"{' ...' if len(extra) > 5 else ''}; check --arch, --classes and that the file "
            "holds the model's state_dict")
    for name in sorted(want):
        x = tensors[name]
        if x.dtype.kind != "f":
            raise FormatError(f"{path}: tensor {name!r} has dtype {x.dtype}, expected a float "
                              "tensor")
        if tuple(x.shape) != model.params[name].shape:
            raise ShapeError(f"{path}: tensor {name!r} has shape {tuple(x.shape)}, "
                             f"architecture {arch!r} with input {tuple(input_shape)} and "
                             f"{num_classes} classes needs {model.params[name].shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise FormatError(f"{path}: tensor {name!r} contains NaN or Inf")
        model.params[name] = parse_format("fp32").encode(x, name=name)
    requantize(model.graph, model.params, weight_format)
    model = Model(model.graph, model.params,
                  model.meta | {"weight_format": parse_format(weight_format).spec, "source": {"safetensors": Path(path).name}})
    _options_meta(model.meta, model.graph, mean, std, classes)
    return model
