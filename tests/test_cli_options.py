"""docs/CLI.md's error rule for every option of every command: each option (and argument)
given an invalid value gives exactly one line on stderr starting with ``error:`` and exit
status 2, and writes nothing. The commands and options are read from the app itself, so
a new option is covered automatically; an option whose invalid value cannot be guessed
(a free string) must be listed in INVALID, or the test fails and says so."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from numharden.data import load_dataset
from numharden.io import save_model
from numharden.models import build
from numharden_cli.app import app

runner = CliRunner()
ROOT = get_command(app)

# (command or "*", option or argument name) -> an invalid value
INVALID = {
    ("*", "model"): "no-such-model.h5",
    ("merge", "sources"): "no-such-store",
    ("*", "--data"): "no-such-data.npz",
    ("*", "--eval-data"): "no-such-data.npz",
    ("*", "-o"): "no-such-folder/out.h5",
    ("landscape", "-o"): "FILE",             # an existing file: not a folder
    ("merge", "-o"): "FILE",
    ("train", "--arch"): "resnet99",
    ("*", "--weight-format"): "int99",
    ("*", "--optimizer"): "adagrad",
    ("*", "--schedule"): "sawtooth",
    ("*", "--milestones"): "x,y",
    ("*", "--method"): "newton",
    ("*", "--act-l1"): "lots",
    ("*", "--fault"): "bogus",
    ("*", "--mix"): "1,2",
    ("*", "--per"): "word",
    ("*", "--target"): "gpu",
    ("*", "--tensors"): "nosuch*",
    ("*", "--exclude"): "nosuch*",
    ("*", "--bits"): "99",
    ("*", "--faults"): "no-such-list.h5",
    ("*", "--ber-range"): "1e-3:1e-6:x",
    ("*", "--out"): "FILE",
    ("*", "--scheduler"): "notanaddress",
    ("*", "--shard"): "3/2",
    ("*", "--mode"): "sideways",
    ("*", "--split"): "val",
    ("*", "--mapping"): "diagonal",
    ("*", "--scaling"): "row",
    ("*", "--variation"): "uniform",
    ("import", "source"): "no-such-model.onnx",
    ("import", "--classes"): "",
    ("import", "--input"): "3x32",
    ("import", "--format"): "int99",
    ("import", "--mean"): "a,b",
    ("import", "--std"): "0",
    ("import", "--arch"): "resnet99",
}


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    d = tmp_path_factory.mktemp("opts")
    m = build("lenet5", weight_format="int4/ch", abits=4, seed=1,
              meta={"normalization": {"mean": [0.286], "std": [0.353]}})
    save_model(m, d / "m.h5")
    ds = load_dataset("fashion-mnist")
    np.savez(d / "small.npz", x_train=ds.images[:128], y_train=ds.labels[:128],
             x_test=ds.images[:64], y_test=ds.labels[:64])
    (d / "FILE").write_text("not a folder\n")
    r = runner.invoke(app, ["sweep", str(d / "m.h5"), "--ber", "1e-3", "--trials", "1",
                            "--data", str(d / "small.npz"), "--out", str(d / "store"),
                            "--no-plot", "--json"])
    assert r.exit_code == 0, r.output
    return d


def _base(cmd, d, out):
    m, data = str(d / "m.h5"), str(d / "small.npz")
    return {
        "info": [m],
        "eval": [m, "--data", data],
        "train": ["--epochs", "1", "--data", data, "-o", str(out / "t.h5")],
        "finetune": [m, "--epochs", "1", "--data", data, "-o", str(out / "f.h5")],
        "inject": [m, "--ber", "1e-3", "-o", str(out / "i.h5")],
        "sweep": [m, "--ber", "1e-3", "--trials", "1", "--data", data, "--out",
                  str(out / "S"), "--no-plot"],
        "merge": [str(d / "store"), "-o", str(out / "M")],
        "import": [str(Path(__file__).parent / "golden" / "onnx" / "lenet5_float.onnx"),
                   "-o", str(out / "imp.h5")],
        "export": [m, "-o", str(out / "m.onnx")],
        "landscape": [m, "--points", "2", "--directions", "1", "--images", "16", "--mode",
                      "float", "--data", data, "-o", str(out / "L")],
    }[cmd]


def _cases():
    for name, cmd in ROOT.commands.items():
        for p in cmd.params:
            if p.name == "help" or getattr(p, "is_flag", False):
                continue  # a flag has no invalid value
            opt = p.opts[0]
            key = INVALID.get((name, opt), INVALID.get(("*", opt)))
            values = [key] if key is not None else ["not-a-number"]
            lo = getattr(p, "min", None)
            if key is None and lo is not None:
                values.append(str(lo - 1))
            for v in values:
                yield pytest.param(name, opt, p.param_type_name == "argument", v,
                                   id=f"{name}{opt}={v}")


def _with(base, opt, is_arg, value):
    args = list(base)
    if is_arg:
        if args and not args[0].startswith("-"):
            args[0] = value
        else:
            args.insert(0, value)
        return args
    if opt in args:
        i = args.index(opt)
        del args[i:i + 2]
    return args + [opt, value]


@pytest.mark.parametrize("cmd,opt,is_arg,value", list(_cases()))
def test_every_invalid_option_value_is_one_error_line(fx, tmp_path, cmd, opt, is_arg, value):
    out = tmp_path / "out"
    out.mkdir()
    value = str(fx / "FILE") if value == "FILE" else value
    args = _with(_base(cmd, fx, out), opt, is_arg, value)
    r = runner.invoke(app, [cmd, *args])
    assert r.exit_code == 2, (f"{cmd} {opt} {value!r}: exit {r.exit_code}; if this value is "
                              f"valid, add an invalid one to INVALID\n{r.output}")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
    assert not any(out.iterdir()), sorted(p.name for p in out.iterdir())


def test_usage_errors_name_the_option_and_point_to_help():
    r = runner.invoke(app, ["sweep", "--ber", "abc"])
    assert r.exit_code == 2 and r.stderr.startswith("error: ")
    assert "'--ber'" in r.stderr and "sweep --help" in r.stderr
    r = runner.invoke(app, ["eval", "--bogus"])
    assert "No such option: --bogus" in r.stderr and len(r.stderr.splitlines()) == 1
    r = runner.invoke(app, ["merge", "-o", "x"])
    assert r.exit_code == 2 and "sources" in r.stderr


def test_help_is_wrapped_by_typer_not_broken_mid_sentence():
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert r.exit_code == 0
    r = runner.invoke(app, ["inject", "--help"], env={"COLUMNS": "200"})
    text = " ".join(r.output.split())
    assert "fault list is stored inside the output file" in text


def test_tables_fit_80_columns(fx, tmp_path):
    env = {"COLUMNS": "80"}
    m, data = str(fx / "m.h5"), str(fx / "small.npz")
    for args in (["info", m], ["eval", m, "--data", data],
                 ["sweep", m, "--ber", "1e-3", "--ber", "1e-2", "--trials", "2", "--data", data,
                  "--out", str(tmp_path / "S"), "--no-plot"],
                 ["sweep", m, "--ber", "1e-3", "--trials", "2", "--per-layer", "--data", data,
                  "--out", str(tmp_path / "P"), "--no-plot"],
                 ["landscape", m, "--points", "2", "--directions", "1", "--images", "16",
                  "--data", data, "-o", str(tmp_path / "L")]):
        r = runner.invoke(app, args, env=env)
        assert r.exit_code == 0, r.output
        assert all(len(ln) <= 80 for ln in r.stdout.splitlines()), r.stdout
        assert "…" not in r.stdout, r.stdout
    assert "acc%" in r.stdout or "rise" in r.stdout


def test_text_with_rich_markup_is_echoed_verbatim(fx, tmp_path):
    """A path such as 'runs/[plot]/m.h5' is shown as typed, not swallowed as markup."""
    odd = tmp_path / "[plot]"
    odd.mkdir()
    r = runner.invoke(app, ["inject", str(fx / "m.h5"), "--ber", "1e-3", "-o",
                            str(odd / "x.h5")])
    assert r.exit_code == 0, r.output
    assert "[plot]" in r.stdout
    r = runner.invoke(app, ["eval", str(odd / "missing.h5")])
    assert r.exit_code == 2 and "[plot]" in r.stderr


def test_plots_note_without_matplotlib_is_not_an_error(fx, tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_mpl)
    import numharden_cli.common as common
    monkeypatch.setattr(common, "_noted", set())
    r = runner.invoke(app, ["sweep", str(fx / "m.h5"), "--ber", "1e-3", "--trials", "1",
                            "--data", str(fx / "small.npz"), "--out", str(tmp_path / "S")])
    assert r.exit_code == 0, r.output
    assert "pip install 'numharden[plot]'" in r.stderr and "error" not in r.stderr.lower()
    r = runner.invoke(app, ["sweep", str(fx / "m.h5"), "--ber", "1e-3", "--trials", "1",
                            "--data", str(fx / "small.npz"), "--out", str(tmp_path / "S"),
                            "--plot"])
    assert r.exit_code == 2 and r.stderr.startswith("error: ")


def test_sweep_reports_the_images_it_used(fx, tmp_path):
    r = runner.invoke(app, ["sweep", str(fx / "m.h5"), "--ber", "1e-3", "--trials", "1",
                            "--data", str(fx / "small.npz"), "--images", "10000000",
                            "--out", str(tmp_path / "S"), "--no-plot", "--json"])
    assert r.exit_code == 0, r.output
    assert "using all 64" in r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["images"] == 64


def test_eval_refuses_data_without_images(fx, tmp_path):
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 1, 28, 28), np.uint8),
             y=np.zeros(0, np.int64))
    r = runner.invoke(app, ["eval", str(fx / "m.h5"), "--data", str(tmp_path / "empty.npz")])
    assert r.exit_code == 2 and "holds no images" in r.stderr
