"""Regressions for the gaps outside testing found (issue 9): each case failed before."""

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from numharden.campaign.store import CampaignStore
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


@pytest.mark.parametrize("cmd", [["inject", "--ber", "1e-3"],
                                 ["finetune", "--epochs", "1", "--batch-size", "60",
                                  "--data", "DATA"]])
def test_output_equal_to_an_input_is_refused(fx, tmp_path, monkeypatch, cmd):
    src = tmp_path / "m.h5"
    src.write_bytes((fx / "m.h5").read_bytes())
    os.symlink(src, tmp_path / "link.h5")
    monkeypatch.chdir(tmp_path)
    cmd = [str(fx / "good.npz") if c == "DATA" else c for c in cmd]
    before = src.read_bytes()
    for o in ("m.h5", "./m.h5", str(src), "link.h5"):
        r = runner.invoke(app, [cmd[0], "m.h5", *cmd[1:], "-o", o])
        _refused(r, "same file as the input", "another output name")
        assert src.read_bytes() == before
    r = runner.invoke(app, ["inject", str(fx / "m.h5"), "--ber", "1e-3", "-o", "no/such/x.h5"])
    _refused(r, "'no/such/x.h5'", "does not exist")
    r = runner.invoke(app, ["inject", str(fx / "m.h5"), "--ber", "1e-3", "-o", str(tmp_path)])
    _refused(r, "is a directory")


def test_faulted_clips_are_trial_outcomes_not_errors(fx, tmp_path):
    """Faults on activation clips at a high rate make clips <= 0, NaN or Inf: the campaign
    finishes and counts those trials (SDC, NaN/Inf) instead of aborting, inject writes the
    model (with a warning) and the fault list alone, and both replay."""
    r = runner.invoke(app, ["sweep", str(fx / "m.h5"), "--data", str(fx / "good.npz"),
                            "--tensors", "*.clip", "--ber", "0.3", "--trials", "6", "--no-plot",
                            "--json", "--out", str(tmp_path / "S")])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout.strip().splitlines()[-1])["rows"][0]
    assert row["trials"] == 6 and row["mean_faults"] > 0
    assert row["sdc_rate"] > 0
    from numharden.io import load_model
    for seed in range(20):  # find a draw that breaks a clip
        out = tmp_path / f"f{seed}.h5"
        r = runner.invoke(app, ["inject", str(fx / "m.h5"), "--tensors", "*.clip", "--ber",
                                "0.3", "--seed", str(seed), "-o", str(out), "--json"])
        assert r.exit_code == 0, r.output
        d = json.loads(r.stdout.strip().splitlines()[-1])
        assert d["tensors"] == [n for n in load_model(fx / "m.h5").params if n.endswith(".clip")]
        if d["invalid"]:
            break
    else:
        pytest.fail("no draw made a clip invalid")
    assert "warning: the faulted model holds values" in r.stderr
    faulted = load_model(out)       # a faulted model file loads and evaluates
    ev = runner.invoke(app, ["eval", str(out), "--data", str(fx / "good.npz"), "--json"])
    assert ev.exit_code == 0, ev.output
    only = tmp_path / "list.h5"
    r = runner.invoke(app, ["inject", str(fx / "m.h5"), "--tensors", "*.clip", "--ber", "0.3",
                            "--seed", str(seed), "--faults-only", "-o", str(only), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout.strip().splitlines()[-1])["faults_only"]
    replay = tmp_path / "replay.h5"
    r = runner.invoke(app, ["inject", str(fx / "m.h5"), "--faults", str(only), "-o",
                            str(replay)])
    assert r.exit_code == 0, r.output
    again = load_model(replay)
    for n, st in faulted.params.items():
        np.testing.assert_array_equal(again.params[n].codes.view(np.uint8),
                                      st.codes.view(np.uint8))


def _cli(args, env=None, timeout=60):
    import subprocess
    import sys
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "numharden_cli.app", *args], env=e,
                          capture_output=True, text=True, timeout=timeout)


def _one_error_line(p, *words):
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize("var,value,words", [
    ("NUMHARDEN_THREADS", "-2", ("NUMHARDEN_THREADS", ">= 0")),
    ("NUMHARDEN_BATCH_SIZE", "0", ("NUMHARDEN_BATCH_SIZE", ">= 1")),
    ("NUMHARDEN_BATCH_SIZE", "lots", ("NUMHARDEN_BATCH_SIZE", "an integer")),
    ("NUMHARDEN_WIDE_KERNELS", "7", ("NUMHARDEN_WIDE_KERNELS", "[0, 1]")),
    ("NUMHARDEN_CAMPAIGN_CACHE_MB", "nan", ("NUMHARDEN_CAMPAIGN_CACHE_MB",)),
    ("NUMHARDEN_CONNECT_TIMEOUT", "-1", ("NUMHARDEN_CONNECT_TIMEOUT", "seconds"))])
def test_bad_environment_values_are_one_line(var, value, words):
    _one_error_line(_cli(["info"], {var: value}), *words)


def test_bad_scheduler_address_fails_fast_and_writes_nothing(tmp_path):
    import time
    for addr, words in (("notanaddress", ("not host:port",)),
                        ("http://host:1", ("unknown scheme",)),
                        ("tcp://127.0.0.1:1", ("cannot connect", "within 1 s"))):
        t0 = time.monotonic()
        p = _cli(["sweep", "--ber", "1e-5", "--scheduler", addr, "--connect-timeout", "1",
                  "--out", str(tmp_path / "S")])
        _one_error_line(p, repr(addr), *words)
        assert time.monotonic() - t0 < 30
        assert not (tmp_path / "S").exists()


def test_one_sweep_trial_is_reproduced_by_inject_with_its_record_seed(fx, tmp_path):
    """Item 15: docs/CLI.md says `inject --seed <record seed>` with the sweep's fault options
    rebuilds a trial's faulted model; check the fault count and the accuracy it gives."""
    opts = ["--ber", "2e-3", "--fault", "mix", "--mix", "0.5,0.25,0.25"]
    data = ["--data", str(fx / "good.npz")]
    r = runner.invoke(app, ["sweep", str(fx / "m.h5"), *opts, "--trials", "3", "--no-plot",
                            "--out", str(tmp_path / "S"), *data, "--json"])
    assert r.exit_code == 0, r.output
    recs = [rec for rec in CampaignStore.open(tmp_path / "S").load().records.values()
            if rec["ber"] > 0]
    assert len(recs) == 3 and len({rec["seed"] for rec in recs}) == 3
    assert any(rec["n_faults"] > rec["n_masked"] for rec in recs)
    for rec in recs:
        out = tmp_path / f"t{rec['trial']}.h5"
        r = runner.invoke(app, ["inject", str(fx / "m.h5"), *opts, "--seed", str(rec["seed"]),
                                "-o", str(out), "--json"])
        assert r.exit_code == 0, r.output
        d = json.loads(r.stdout.strip().splitlines()[-1])
        assert (d["n_faults"], d["n_masked"]) == (rec["n_faults"], rec["n_masked"])
        r = runner.invoke(app, ["eval", str(out), *data, "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout.strip().splitlines()[-1])["correct"] == rec["correct"]


def test_sweep_with_more_trials_or_rates_extends_the_default_store(fx, tmp_path, monkeypatch):
    """Issue 10 item 4 from the command line: the default --out is named by the campaign's
    identity, so adding trials or a BER reuses every finished trial."""
    monkeypatch.chdir(tmp_path)
    base = ["sweep", str(fx / "m.h5"), "--data", str(fx / "good.npz"), "--no-plot", "--json"]

    def run(*extra):
        r = runner.invoke(app, [*base, *extra])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout.strip().splitlines()[-1])
    a = run("--ber", "1e-3", "--trials", "2")
    b = run("--ber", "1e-3", "--ber", "3e-3", "--trials", "3")
    assert a["store"] == b["store"] and a["campaign_key"] == b["campaign_key"]
    assert [(r["ber"], r["trials"]) for r in b["rows"]] == [(1e-3, 3), (3e-3, 3)]
    assert b["n_records"] == 1 + 3 + 3  # baseline + both cells, nothing run twice
    stores = list((tmp_path / "numharden-runs").iterdir())
    assert len(stores) == 1
    recs = CampaignStore.open(stores[0]).load()
    assert recs.duplicates == 0 and len(recs.records) == 7
    r = runner.invoke(app, [*base, "--ber", "1e-3", "--trials", "2", "--seed", "1",
                            "--out", a["store"]])
    _refused(r, "holds a different campaign", "seed: stored 0, requested 1")
