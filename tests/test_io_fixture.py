"""Backward compatibility: a version-1 file written without numharden (by
tests/fixtures/make_model_v1.py, h5py only, every number format once) keeps loading and
computing the logits recorded when it was generated."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from naive_io import naive_forward, naive_read_model
from numharden.io import content_sha256, load_model, save_model

FIX = Path(__file__).resolve().parent / "fixtures"


def test_fixture_loads_with_every_format():
    m = load_model(FIX / "model_v1.h5")
    specs = sorted(st.fmt.spec for st in m.params.values())
    assert specs == sorted(["int3/ch", "fp16", "bf16", "q4.12", "fp32", "uint8", "fp32",
                            "uint5/ch", "int8", "q16.16", "int2"])
    assert "momentum" not in m.graph["bn1"].attrs  # optional attribute left out
    with h5py.File(FIX / "model_v1.h5", "r") as f:
        assert f.attrs["sha256"] == content_sha256(f)


def test_fixture_logits_are_stable():
    m = load_model(FIX / "model_v1.h5")
    expected = np.load(FIX / "model_v1_expected.npz")
    x, want = expected["x"], expected["logits"]
    np.testing.assert_allclose(m.forward(x, dtype=np.float64, fold_bn=False), want,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.forward(x.astype(np.float32)), want, rtol=1e-4, atol=1e-4)
    graph, _, params = naive_read_model(FIX / "model_v1.h5")  # the interpreter did not drift
    np.testing.assert_allclose(naive_forward(graph, params, x), want, rtol=1e-12, atol=0)


def test_fixture_resaved_by_numharden_is_equivalent(tmp_path):
    m = load_model(FIX / "model_v1.h5")
    m2 = load_model(save_model(m, tmp_path / "again.h5"))
    assert m2.checksum() == m.checksum() and m2.meta == m.meta
