"""Generate the PyTorch golden logits checked by ``tests/test_golden.py`` (dev tool).

Usage (from the repository root; needs ``torch``, which numharden itself never imports)::

    python tests/golden/make_golden.py            # every architecture x mode
    python tests/golden/make_golden.py resnet20   # some architectures

For every zoo architecture ``torch_twins.py`` holds an *independent* ``torch.nn``
definition whose ``state_dict`` keys equal numharden's parameter names, so the weights
are loaded with ``load_state_dict(strict=True)`` from ``Model.float_params()`` (plus the
``num_batches_tracked`` buffers PyTorch adds). Tensors are NCHW; batch norm runs in eval
mode and is *not* folded, so numharden's folding is what the golden checks. Activation
fake quantisation is written out in torch as
``torch.round(torch.clamp(x, 0, clip) / s) * s`` with ``s = clip / (2**bits - 1)``.

Precision: the ``'float'`` goldens run in float32 (torch and numharden both float32).
The ``'fakequant'`` goldens run in float64 on both sides (``module.double()`` here,
``Model.forward(dtype=np.float64)`` in the test): in float32 the two frameworks sum in
different orders, and a pre-activation within an ulp of a rounding boundary can then
round to a different 4-bit code, moving a logit by a whole quantisation step.

Each ``<arch>_<mode>.npz`` holds the torch logits (``logits``, float64, (4, 10)), the
dtype used, and SHA-256 checksums of the numharden graph, decoded parameters and input
(see ``common.checksums``) so the test can tell "init drifted" from "forward wrong".
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

_TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_TESTS), str(_TESTS.parent)]  # golden.common; numharden from a checkout
from golden.common import (ARCHS, DTYPE, MODES, NUM_CLASSES, checksums,  # noqa: E402
                           fixture_path, golden_input, golden_model, input_shape)
from golden.torch_twins import load_params, torch_net  # noqa: E402


def torch_logits(arch: str, mode: str, model, x: np.ndarray) -> np.ndarray:
    """Logits of the torch twin of ``model`` on ``x`` in the golden dtype of ``mode``."""
    abits = model.meta.get("abits")
    net = load_params(torch_net(arch, input_shape(arch), NUM_CLASSES, abits),
                      model.float_params())
    dtype = DTYPE[mode]
    net = net.double() if dtype == np.float64 else net.float()
    with torch.inference_mode():
        return net(torch.from_numpy(x.astype(dtype))).numpy()


def act_code_stats(model, x, dtype) -> str:
    """Share of zero / interior / saturated codes over all act_quant outputs (sanity)."""
    zero = mid = top = 0

    def observe(node, out):
        nonlocal zero, mid, top
        if node.op == "act_quant":
            clip = float(model.params[node.params["clip"]].decode()[0])
            out = np.asarray(out)
            zero += int((out == 0).sum())
            top += int((out >= clip * (1 - 1e-9)).sum())
            mid += int(out.size - (out == 0).sum() - (out >= clip * (1 - 1e-9)).sum())

    model.forward(x, dtype=dtype, observe=observe)
    n = max(zero + mid + top, 1)
    return f"act codes: zero {zero / n:.2f}, interior {mid / n:.2f}, saturated {top / n:.2f}"


def make(arch: str, mode: str) -> None:
    torch.manual_seed(0)
    model, x = golden_model(arch, mode), golden_input(arch)
    dtype = DTYPE[mode]
    ref = torch_logits(arch, mode, model, x)
    ours = model.forward(x, dtype=dtype)
    sums = checksums(model, x)
    np.savez_compressed(fixture_path(arch, mode), logits=ref.astype(np.float64),
                        dtype=np.array(np.dtype(dtype).name),
                        torch_version=np.array(torch.__version__),
                        **{f"sha256_{k}": np.array(v) for k, v in sums.items()})
    diff = float(np.abs(ours.astype(np.float64) - ref).max())
    info = act_code_stats(model, x, dtype) if mode == "fakequant" else ""
    print(f"{arch:12s} {mode:9s} |logits| max {np.abs(ref).max():8.3f} "
          f"std over batch {ref.std(0).mean():7.3f}  numharden diff {diff:.2e}  {info}")


def main(argv) -> None:
    archs = argv or ARCHS
    for arch in archs:
        for mode in MODES:
            make(arch, mode)


if __name__ == "__main__":
    main(sys.argv[1:])
