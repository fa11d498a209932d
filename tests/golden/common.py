"""Deterministic zoo models and inputs shared by the golden generator and its test.

``make_golden.py`` (a dev tool that imports PyTorch) and ``tests/test_golden.py`` (which
never does) must build bit-identical numharden models and inputs; both call
:func:`golden_model` and :func:`golden_input` from here. Each fixture also stores
:func:`checksums` of what was fed to PyTorch, so a failing test can tell "the model or
input drifted" (regenerate after checking why) from "the forward is wrong".

Modes
-----
``'float'``
    fp32 weights, no activation quantisation; compared in float32.
``'fakequant'``
    ``int4/ch`` weights for every architecture (4-bit per-output-channel codes are the
    setting numharden targets; the golden test checks the forward, not accuracy, so
    nothing argues for wider codes on the larger nets) and a 4-bit unsigned activation
    quantiser after every ReLU/ReLU6. Compared in float64 on both sides: in float32 a
    pre-activation that lands within one ulp of a rounding boundary can round to a
    different 4-bit code in the two frameworks and move a logit by far more than 1e-4.

Every batch-norm tensor (weight, bias, running_mean, running_var > 0) and every clip
value is redrawn from a seeded generator, so that folding batch norm into convolutions
is exercised with non-trivial statistics (fresh models have the identity batch norm).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np

from numharden.models import build

HERE = Path(__file__).resolve().parent
ARCHS = ("lenet5", "resnet20", "resnet20a", "resnet18", "mobilenetv2", "densenet")
MODES = ("float", "fakequant")
NUM_CLASSES = 10
BATCH = 4
ABITS = 4
MODEL_SEED = 20240611
WEIGHT_FORMAT = {"float": "fp32", "fakequant": "int4/ch"}
DTYPE = {"float": np.float32, "fakequant": np.float64}
TOLERANCE = 1e-4  # max abs logit difference (issue 2)


def input_shape(arch: str) -> tuple[int, int, int]:
    """Per-sample (C, H, W): Fashion-MNIST for LeNet-5, CIFAR for the others."""
    return (1, 28, 28) if arch == "lenet5" else (3, 32, 32)


def _rng(*tags: str) -> np.random.Generator:
    # crc32 rather than hash(): stable across processes (PYTHONHASHSEED)
    return np.random.default_rng([MODEL_SEED] + [zlib.crc32(t.encode()) for t in tags])


def _check_mode(arch: str, mode: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown golden architecture {arch!r}; choose one of {ARCHS}")
    if mode not in MODES:
        raise ValueError(f"unknown golden mode {mode!r}; choose one of {MODES}")


def _overwrite(model, name: str, value: np.ndarray) -> None:
    """Write ``value`` into the fp32 stored tensor ``name`` through its codes."""
    st = model.params[name]
    if st.fmt.spec != "fp32" or st.codes.shape != value.shape:
        raise ValueError(f"golden: expected {name!r} stored as fp32 {value.shape}, found "
                         f"{st.fmt.spec} {st.codes.shape}; update tests/golden/common.py")
    st.codes[...] = value.astype(np.float32)
    st.touch()


def golden_model(arch: str, mode: str):
    """The numharden zoo model of one golden case, batch norm and clips randomised.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHS`.
    mode : {'float', 'fakequant'}

    Returns
    -------
    numharden.graph.Model
    """
    _check_mode(arch, mode)
    model = build(arch, input_shape=input_shape(arch), num_classes=NUM_CLASSES,
                  weight_format=WEIGHT_FORMAT[mode],
                  abits=ABITS if mode == "fakequant" else None, seed=MODEL_SEED)
    bn_rng, clip_rng = _rng(arch, "batchnorm"), _rng(arch, "clip")
    for node in model.graph.nodes:
        if node.op == "batchnorm":
            c = node.attrs["num_features"]
            p = node.params
            # a fifth of the gammas negative: folding must carry the sign into the weights
            sign = np.where(bn_rng.random(c) < 0.2, -1.0, 1.0)
            _overwrite(model, p["weight"], sign * bn_rng.uniform(0.5, 1.5, c))
            _overwrite(model, p["bias"], bn_rng.normal(0.0, 0.3, c))
            _overwrite(model, p["running_mean"], bn_rng.normal(0.0, 0.3, c))
            _overwrite(model, p["running_var"], bn_rng.uniform(0.3, 2.5, c))
        elif node.op == "act_quant":
            _overwrite(model, node.params["clip"], clip_rng.uniform(0.75, 4.0, 1))
    return model


def golden_input(arch: str) -> np.ndarray:
    """Seeded normalised input batch, shape (BATCH, C, H, W), float32 (unit normal noise)."""
    _check_mode(arch, MODES[0])
    return _rng(arch, "input").standard_normal((BATCH,) + input_shape(arch)).astype(np.float32)


def _sha(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def checksums(model, x: np.ndarray) -> dict[str, str]:
    """SHA-256 of the graph, of the decoded parameters (what PyTorch loaded) and of ``x``."""
    params = model.float_params()
    return {
        "graph": _sha(json.dumps(model.graph.to_dict(), sort_keys=True).encode()),
        "params": _sha(*(f"{k}|{v.dtype.str}|{v.shape}|".encode() + v.tobytes()
                         for k, v in sorted(params.items()))),
        "input": _sha(f"{x.dtype.str}|{x.shape}|".encode(), np.ascontiguousarray(x).tobytes()),
    }


def fixture_path(arch: str, mode: str) -> Path:
    """Where the golden logits of one case live: ``tests/golden/<arch>_<mode>.npz``."""
    _check_mode(arch, mode)
    return HERE / f"{arch}_{mode}.npz"
