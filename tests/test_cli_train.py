"""`numharden train --method/--act-l1` and `numharden finetune` end to end on a small
synthetic-size dataset, and their option errors (one line, exit 2)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from numharden.data import load_dataset
from numharden.io import load_model
from numharden_cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_train")
    ds = load_dataset("fashion-mnist")
    np.savez(d / "small.npz", x_train=ds.images[:192], y_train=ds.labels[:192],
             x_test=ds.images[-100:], y_test=ds.labels[-100:])
    return d


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _train(files, out, *extra):
    return _json(runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "64", "--data",
                                     str(files / "small.npz"), "-o", str(out), "--json",
                                     *extra]))


def test_train_saq_with_act_l1_records_the_method(files):
    out = files / "saq.h5"
    d = _train(files, out, "--method", "saq", "--rho", "0.1", "--rho-warmup-epochs", "0",
               "--act-l1", "1e-5,relu4=0", "--no-perturb-bn")
    step = load_model(out).meta["training"]["recipe"]["step"]
    assert d["method"] == "saq" and d["training"]["recipe"]["step"] == step
    assert step["name"] == "saq" and step["rho"] == 0.1 and step["passes"] == 2
    assert not step["perturb_bn"] and not step["perturb_bias"]
    assert step["act_l1"]["lambda"] == 1e-5 and step["act_l1"]["per_layer"] == {"relu4": 0.0}
    res = d["training"]["results"]
    assert 0 < res["test_sparsity"] < 1 and "train_sparsity" in res["epochs"][0]


def test_train_sgd_method_is_the_plain_step_with_any_optimizer(files):
    d = _train(files, files / "adam.h5", "--method", "sgd", "--optimizer", "adam", "--lr", "0.001")
    rec = d["training"]["recipe"]
    assert rec["step"] == {"name": "plain"} and rec["optimizer"]["name"] == "adam"


def test_finetune_keeps_formats_normalization_and_history(files):
    base = files / "base.h5"
    _train(files, base)
    out = files / "ft.h5"
    d = _json(runner.invoke(app, ["finetune", str(base), "--method", "asam", "--rho", "0.3",
                                  "--eta", "0.05", "--epochs", "1", "--batch-size", "64",
                                  "--data", str(files / "small.npz"), "-o", str(out),
                                  "--json"]))
    before, after = load_model(base), load_model(out)
    assert d["method"] == "asam" and d["weight_formats"] == ["int4/ch"]
    assert {n: p.fmt.spec for n, p in before.params.items()} == \
           {n: p.fmt.spec for n, p in after.params.items()}
    assert after.meta["normalization"] == before.meta["normalization"]
    assert after.meta["class_names"] == before.meta["class_names"]
    assert after.meta["arch"] == "lenet5"
    tr = after.meta["training"]
    assert tr["recipe"]["step"]["name"] == "asam" and tr["recipe"]["step"]["eta"] == 0.05
    assert tr["recipe"]["calibration"] is None  # trained clips kept
    assert tr["previous"] == [before.meta["training"]]
    clips = [n for n in before.params if n.endswith(".clip")]
    for n in clips:
        assert abs(float(after.params[n].decode()[0]) - float(before.params[n].decode()[0])) < 0.1
    # a second fine-tune appends, oldest first
    out2 = files / "ft2.h5"
    _json(runner.invoke(app, ["finetune", str(out), "--epochs", "1", "--batch-size", "64",
                              "--data", str(files / "small.npz"), "-o", str(out2), "--json"]))
    prev = load_model(out2).meta["training"]["previous"]
    assert [p["recipe"]["step"]["name"] for p in prev] == ["plain", "asam"]


@pytest.mark.parametrize("args, message", [
    (["train", "--method", "saq", "--rho", "-0.1"], "rho must be a finite number >= 0"),
    (["train", "--method", "lookahead"], "unknown training method 'lookahead'"),
    (["train", "--act-l1", "-1e-5"], "act_l1 lambda must be a finite number >= 0"),
    (["train", "--act-l1", "relu1=x"], "'relu1=x' is not a number"),
    (["train", "--act-l1", "relu9=1e-5"], "['relu9'] are not ReLU"),
    (["train", "--rho", "0.1"], "--rho, --eta and --rho-warmup-epochs apply to --method"),
    (["train", "--method", "saq", "--eta", "0.1"], "--eta applies to --method asam"),
    (["finetune", "MODEL", "--rho", "-1"], "rho must be a finite number >= 0"),
    (["finetune", "/no/such/model.h5"], "/no/such/model.h5"),
])
def test_bad_options_give_one_error_line(files, args, message, tmp_path):
    args = [str(files / "base.h5") if a == "MODEL" else a for a in args]
    result = runner.invoke(app, [*args, "--data", str(files / "small.npz"), "--epochs", "1",
                                 "-o", str(tmp_path / "x.h5")])
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.h5").exists()
