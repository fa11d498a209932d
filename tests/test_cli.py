"""The command line: each command end to end on a small model and data, and its errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from numharden.data import load_dataset
from numharden.io import load_model, save_model
from numharden.models import build
from numharden_cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    m = build("lenet5", weight_format="int4/ch", abits=4, seed=1,
              meta={"normalization": {"mean": [0.286], "std": [0.353]}})
    save_model(m, d / "m.h5")
    ds = load_dataset("fashion-mnist")
    np.savez(d / "small.npz", x_train=ds.images[:256], y_train=ds.labels[:256],
             x_test=ds.images[-200:], y_test=ds.labels[-200:])
    return d


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_info_json(files):
    d = _json(runner.invoke(app, ["info", str(files / "m.h5"), "--json"]))
    assert d["arch"] == "lenet5" and d["num_classes"] == 10
    w = {p["name"]: p for p in d["params"]}["conv1.weight"]
    assert w["format"] == "int4/ch" and w["stored_bits"] == 6 * 25 * 4
    assert d["stored_bits"] == sum(p["stored_bits"] for p in d["params"])


def test_eval_json_matches_library(files):
    d = _json(runner.invoke(app, ["eval", str(files / "m.h5"), "--data", str(files / "small.npz"), "--json"]))
    m = load_model(files / "m.h5")
    ds = load_dataset(str(files / "small.npz"), split="test")
    assert d["n"] == 200
    assert d["correct"] == int((m.predict(ds.images) == ds.labels).sum())
    assert set(d["sparsity"]) == {"relu1", "relu1_q", "relu2", "relu2_q", "relu3", "relu3_q",
                                  "relu4", "relu4_q"}
    assert all(0.0 <= s["sparsity"] <= 1.0 for s in d["sparsity"].values())


def test_train_writes_a_loadable_model_with_recipe(files):
    out = files / "trained.h5"
    d = _json(runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "64", "--data",
                                  str(files / "small.npz"), "-o", str(out), "--json"]))
    m = load_model(out)
    assert d["weight_format"] == "int4/ch"
    assert m.meta["training"]["recipe"]["epochs"] == 1
    assert m.params["fc1.weight"].fmt.spec == "int4/ch"


def test_inject_then_replay_is_bit_exact(files):
    a, b = files / "f1.h5", files / "f2.h5"
    d = _json(runner.invoke(app, ["inject", str(files / "m.h5"), "--ber", "1e-3", "--seed", "4",
                                  "-o", str(a), "--json"]))
    assert d["n_faults"] > 0
    _json(runner.invoke(app, ["inject", str(files / "m.h5"), "--faults", str(a), "-o", str(b), "--json"]))
    fa, fb, clean = load_model(a), load_model(b), load_model(files / "m.h5")
    changed = 0
    for k in clean.params:
        assert np.array_equal(fa.params[k].codes, fb.params[k].codes)
        changed += int((fa.params[k].codes != clean.params[k].codes).sum())
    assert 0 < changed <= d["n_faults"]


def test_landscape_writes_documented_files(files, tmp_path):
    """docs/CLI.md's landscape outputs: per mode an HDF5 + CSV surface whose centre is the
    unperturbed model's loss, and a sharpness figure averaged over 2 x directions."""
    import csv

    import h5py
    out = tmp_path / "ls"
    d = _json(runner.invoke(app, ["landscape", "--points", "3", "--span", "0.5", "--images", "60",
                                  "--directions", "2", "--mode", "float", "-o", str(out),
                                  "--json"]))
    assert d["model"] == "lenet5-fmnist-w4a4" and d["images"] == 60 and list(d["modes"]) == ["float"]
    s = d["modes"]["float"]
    assert len(s["sharpness"]["rises"]) == 4
    assert s["sharpness"]["rise"] == pytest.approx(np.mean(s["sharpness"]["rises"]))
    with h5py.File(out / "landscape-1d-float.h5") as f:
        np.testing.assert_allclose(f["alphas"][:], [-0.5, 0.0, 0.5])
        assert f["loss"].shape == (3,) and f.attrs["mode"] == "float"
        assert f["loss"][1] == pytest.approx(s["center_loss"], rel=1e-9)  # a = 0: no change
    with open(out / "landscape-1d-float.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["alpha", "loss", "accuracy"] and len(rows) == 4
    assert all(str(p).startswith(str(out)) for p in s["files"])
    wc = d["worst_case"]
    assert wc["rho"] == 0.05 and wc["images"] == 60 and wc["rise"] > 0
    assert wc["center_loss"] == pytest.approx(s["center_loss"], rel=1e-5)


def test_sweep_resume_and_shards_merge(files, tmp_path):
    args = ["sweep", str(files / "m.h5"), "--ber", "1e-3", "--ber", "1e-2", "--trials", "3",
            "--data", str(files / "small.npz"), "--no-plot", "--json"]
    full = _json(runner.invoke(app, args + ["--out", str(tmp_path / "full")]))
    assert [r["ber"] for r in full["rows"]] == [1e-3, 1e-2]
    assert all(r["trials"] == 3 for r in full["rows"])
    again = _json(runner.invoke(app, args + ["--out", str(tmp_path / "full")]))  # resume: no work
    assert again["rows"] == full["rows"]
    for i in range(2):
        _json(runner.invoke(app, args + ["--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2"]))
    merged = _json(runner.invoke(app, ["merge", str(tmp_path / "s0"), str(tmp_path / "s1"),
                                       "-o", str(tmp_path / "merged"), "--json"]))
    assert merged["rows"] == full["rows"]


def test_sweep_per_layer_ranks_layers(files, tmp_path):
    d = _json(runner.invoke(app, ["sweep", str(files / "m.h5"), "--ber", "1e-2", "--trials", "2",
                                  "--images", "100", "--per-layer", "--no-plot", "--json",
                                  "--out", str(tmp_path / "pl")]))
    assert {r["group"] for r in d["ranking"]} == {"conv1.weight", "conv2.weight", "fc1.weight",
                                                  "fc2.weight", "fc3.weight"}
    drops = [r["acc_drop"] for r in d["ranking"]]
    assert drops == sorted(drops, reverse=True)


@pytest.mark.parametrize("args, message", [
    (["sweep", "--ber", "2"], "outside [0, 1]"),
    (["sweep", "--ber", "-1e-5"], "outside [0, 1]"),
    (["sweep"], "at least one bit-error rate"),
    (["sweep", "--ber", "1e-5", "--tensors", "nolayer*"], "nolayer"),
    (["sweep", "--ber", "1e-5", "--fault", "melt"], "melt"),
    (["eval", "/no/such/model.h5"], "no/such/model.h5"),
    (["eval", "MODEL", "--data", "/no/such/data.npz"], "/no/such/data.npz"),
    (["inject", "--ber", "1e-3"], "--output"),
])
def test_errors_are_one_line(files, args, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    if args[0] in ("sweep", "inject"):
        args = [args[0], str(files / "m.h5")] + args[1:]
    args = [str(files / "m.h5") if a == "MODEL" else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    text = result.stderr if result.stderr else result.output
    assert message in text
    assert "Traceback" not in result.output


def test_corrupt_store_is_refused(files, tmp_path):
    store = tmp_path / "bad"
    store.mkdir()
    (store / "campaign.json").write_text("{ not json")
    result = runner.invoke(app, ["sweep", str(files / "m.h5"), "--ber", "1e-3", "--trials", "1",
                                 "--images", "10", "--out", str(store), "--no-plot"])
    assert result.exit_code == 2 and "campaign.json" in result.stderr
