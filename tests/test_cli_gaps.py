"""Regressions for the gaps outside testing found (issue 9): each case failed before."""

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from numharden.data import load_dataset
from numharden.io import save_model
from numharden.models import build
from numharden_cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    d = tmp_path_factory.mktemp("gaps")
    m = build("lenet5", weight_format="int4/ch", abits=4, seed=1,
              meta={"normalization": {"mean": [0.286], "std": [0.353]}})
    save_model(m, d / "m.h5")
    ds = load_dataset("fashion-mnist")
    x, y = ds.images[:120], ds.labels[:120]
    np.savez(d / "good.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    np.savez(d / "shifted.npz", x_train=x, y_train=y + 50, x_test=x, y_test=y + 50)
    return d


def _refused(result, *words):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize("cmd", [
    ["eval"], ["sweep", "--ber", "1e-3", "--trials", "2", "--no-plot"],
    ["landscape", "--points", "2", "--directions", "1", "--images", "20", "--mode", "float"],
    ["finetune", "--epochs", "1", "--batch-size", "60"]])
def test_labels_the_model_cannot_produce_are_refused_everywhere(fx, tmp_path, cmd):
    out = {"sweep": ["--out", str(tmp_path / "s")], "landscape": ["-o", str(tmp_path / "l")],
           "finetune": ["-o", str(tmp_path / "f.h5")]}.get(cmd[0], [])
    r = runner.invoke(app, [cmd[0], str(fx / "m.h5"), *cmd[1:], "--data",
                            str(fx / "shifted.npz"), *out])
    _refused(r, "labels 50..", "10 classes")
    assert not any(tmp_path.iterdir())  # nothing written


def test_store_identity_is_content_not_paths(fx, tmp_path, monkeypatch):
    """The same campaign resumes from another working directory with other spellings of
    the model and data paths, and from the built-in name of the model a file holds."""
    store = tmp_path / "S"
    monkeypatch.chdir(fx)
    args = ["--ber", "1e-3", "--trials", "3", "--no-plot", "--json", "--out", str(store)]
    r1 = runner.invoke(app, ["sweep", "m.h5", "--data", "good.npz", *args])
    assert r1.exit_code == 0, r1.output
    monkeypatch.chdir(tmp_path)
    r2 = runner.invoke(app, ["sweep", str(fx / "m.h5"), "--data", f"{fx}/./good.npz", *args])
    assert r2.exit_code == 0, r2.output
    a, b = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (r1, r2))
    assert a["campaign_key"] == b["campaign_key"] and a["rows"] == b["rows"]
    assert b["spec"]["paths"] == {"model": "m.h5", "data": "good.npz"}  # first creator's
    # built-in name vs a copy of the built-in file
    from numharden.io.hdf5 import resolve_model_path
    src = resolve_model_path("lenet5-fmnist-w4a4")
    os.symlink(src, tmp_path / "copy.h5")
    base = ["--ber", "1e-3", "--trials", "2", "--no-plot", "--json", "--images", "50",
            "--out", str(tmp_path / "B")]
    assert runner.invoke(app, ["sweep", *base]).exit_code == 0
    r = runner.invoke(app, ["sweep", "copy.h5", *base])
    assert r.exit_code == 0, r.output
    # a different data set is still a different campaign
    r = runner.invoke(app, ["sweep", str(fx / "m.h5"), "--data", str(fx / "good.npz"),
                            "--images", "100", *args])
    _refused(r, "holds a different campaign", "data_sha256")
