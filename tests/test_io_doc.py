"""docs/FORMAT.md cannot rot: its examples run, and the file they write loads and computes
what an h5py-only interpreter written from the same document computes."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from naive_io import naive_forward, naive_read_model
from numharden.errors import FormatError
from numharden.io import content_sha256, load_model
from numharden.io.schema import OP_ATTRS
from numharden.io.tensors import DIGEST_PREFIX

DOC = Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md"
BLOCK = re.compile(r"<!-- example: (\w+) -->\n```python\n(.*?)```", re.S)


def examples() -> dict[str, str]:
    return dict(BLOCK.findall(DOC.read_text()))


def test_doc_has_the_examples():
    assert list(examples()) == ["write", "checksum", "run"]


def test_doc_example_writes_a_valid_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = examples()
    ns: dict = {}
    exec(compile(code["write"], "FORMAT.md:write", "exec"), ns)  # noqa: S102
    path = tmp_path / "example.h5"
    model = load_model(path)  # no checksum yet: a third-party file may omit it
    assert model.meta["class_names"] == ["circle", "square", "triangle"]
    assert model.params["conv1.weight"].fmt.spec == "int4/ch"
    assert model.params["fc.bias"].codes.dtype == np.int16
    np.testing.assert_array_equal(model.params["conv1.weight"].codes, ns["conv_codes"])

    exec(compile(code["checksum"], "FORMAT.md:checksum", "exec"), ns)  # noqa: S102
    with h5py.File(path, "r") as f:
        # the document's checksum (an independent implementation) equals numharden's
        assert f.attrs["sha256"] == content_sha256(f)
    exec(compile(code["run"], "FORMAT.md:run", "exec"), ns)  # noqa: S102
    assert ns["logits"].shape == (5, 3) and ns["logits"].dtype == np.float32

    # the engine computes what the document says (h5py-only interpreter, float64)
    graph, meta, params = naive_read_model(path)
    x = ns["x"].astype(np.float64)
    want = naive_forward(graph, params, x)
    got = load_model(path).forward(x, dtype=np.float64, fold_bn=False)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ns["logits"], want, rtol=1e-4, atol=1e-4)


def test_doc_checksum_detects_corruption(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = examples()
    ns: dict = {}
    exec(compile(code["write"] + code["checksum"], "FORMAT.md", "exec"), ns)  # noqa: S102
    with h5py.File("example.h5", "r+") as f:
        codes = f["params/fc.weight/codes"]
        codes[0, 0] = codes[0, 0] ^ 1
    with pytest.raises(FormatError, match="content checksum mismatch"):
        load_model(tmp_path / "example.h5")


def test_doc_facts_match_code():
    text = DOC.read_text()
    n, prefix = re.search(r"the (\d+) ASCII bytes `([^`]+)` followed by one zero byte", text).groups()
    assert len(prefix) == int(n) and prefix.encode() + b"\0" == DIGEST_PREFIX
    documented = set(re.findall(r"^\*\*`(\w+)`\*\*", text, re.M))
    documented |= set(re.findall(r"\*\*`(\w+)`\*\*:", text))
    assert documented == set(OP_ATTRS)
    for op, attrs in OP_ATTRS.items():  # every attribute name appears in the document
        for attr in attrs:
            assert f"`{attr}`" in text, (op, attr)
    assert "docs/FAULTS.md" in text
