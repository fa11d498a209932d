"""Model zoo forward against PyTorch golden logits (issue 2).

The fixtures ``tests/golden/<arch>_<mode>.npz`` hold logits of independent ``torch.nn``
twins of every zoo architecture (``tests/golden/make_golden.py``; batch norm unfolded,
activation fake quantisation written in torch). Here numharden rebuilds the same model
and input (``tests/golden/common.py``), checks they are the ones PyTorch saw, and
compares its logits, with batch norm folded and unfolded. 'float' cases run in
float32, 'fakequant' (int4/ch weights, 4-bit activations) in float64 -- see the
generator's docstring for why.
"""

import numpy as np
import pytest

from golden.common import (ARCHS, DTYPE, MODES, TOLERANCE, checksums, fixture_path,
                           golden_input, golden_model)

CASES = [(a, m) for a in ARCHS for m in MODES]
# float64 on both sides agrees to ~1e-15 (measured); a much larger gap means the float64
# path computes something in float32 (e.g. the batch-norm fold), which hides in 1e-4.
FLOAT64_TOLERANCE = 1e-9


def _load(arch, mode):
    path = fixture_path(arch, mode)
    if not path.exists():
        pytest.fail(f"golden fixture {path.name} is missing; generate it with "
                    "`python tests/golden/make_golden.py` (needs torch)")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _check_inputs(arch, mode, model, x, gold):
    """Fail with 'init drifted' (not 'forward wrong') if numharden's side changed."""
    drifted = [k for k, v in checksums(model, x).items() if str(gold[f"sha256_{k}"]) != v]
    if drifted:
        pytest.fail(f"golden {arch}/{mode}: checksum of {' and '.join(drifted)} differs from "
                    "what PyTorch was given, so the logits cannot be compared. If the zoo, "
                    "initialisation or tests/golden/common.py changed on purpose, rerun "
                    "`python tests/golden/make_golden.py`; otherwise the change is a bug")


@pytest.fixture(scope="module", params=CASES, ids=[f"{a}-{m}" for a, m in CASES])
def case(request):
    arch, mode = request.param
    gold = _load(arch, mode)
    model, x = golden_model(arch, mode), golden_input(arch)
    _check_inputs(arch, mode, model, x, gold)
    return arch, mode, model, x, gold


def _max_diff(got, ref):
    assert got.shape == ref.shape, f"{got.shape=} != {ref.shape=}"
    return float(np.abs(got.astype(np.float64) - ref).max())


def test_fixture_is_informative(case):
    # the logits must move with the input by much more than the tolerance, or a forward
    # that ignored its input could still pass
    arch, mode, _, _, gold = case
    ref = gold["logits"]
    assert ref.shape == (4, 10) and np.isfinite(ref).all()
    assert str(gold["dtype"]) == np.dtype(DTYPE[mode]).name
    assert ref.std(axis=0).max() > 10 * TOLERANCE, f"{arch}/{mode}: logits barely depend on x"


@pytest.mark.parametrize("fold_bn", [True, False], ids=["folded", "unfolded"])
def test_logits_match_pytorch(case, fold_bn):
    arch, mode, model, x, gold = case
    dtype = DTYPE[mode]
    got = model.forward(x, dtype=dtype, fold_bn=fold_bn)
    assert got.dtype == dtype
    diff = _max_diff(got, gold["logits"])
    assert diff <= TOLERANCE, (f"{arch}/{mode} fold_bn={fold_bn}: max |logit - torch| = "
                               f"{diff:.3g} > {TOLERANCE}")
    if dtype == np.float64:
        assert diff <= FLOAT64_TOLERANCE, (f"{arch}/{mode} fold_bn={fold_bn}: float64 "
                                           f"logits off by {diff:.3g}; some step runs in "
                                           "float32")


def _perturbed_diff(arch, mode, edit):
    model, x = golden_model(arch, mode), golden_input(arch)
    edit(model)
    return _max_diff(model.forward(x, dtype=DTYPE[mode]), _load(arch, mode)["logits"])


def _bump_first_weight_code(model):
    st = model.params["conv1.weight"]
    st.codes.flat[0] += 1 if st.codes.flat[0] < 7 else -1
    st.touch()


def _eps_1e4_instead_of_1e5(model):
    for node in model.graph.nodes:
        if node.op == "batchnorm":
            st = model.params[node.params["running_var"]]
            st.codes += np.float32(9e-5)
            st.touch()


@pytest.mark.parametrize("arch, mode, edit", [
    ("lenet5", "fakequant", _bump_first_weight_code),
    ("resnet20", "fakequant", _bump_first_weight_code),
    ("resnet20", "float", _eps_1e4_instead_of_1e5),
    ("densenet", "float", _eps_1e4_instead_of_1e5),
], ids=["lenet5-weight-lsb", "resnet20-weight-lsb", "resnet20-bn-eps", "densenet-bn-eps"])
def test_comparison_detects_small_errors(arch, mode, edit):
    # the golden check is not vacuous: one 4-bit weight code off by one LSB, or batch
    # norm with eps 1e-4 instead of 1e-5, moves the logits well past the tolerance
    assert _perturbed_diff(arch, mode, edit) > 5 * TOLERANCE
