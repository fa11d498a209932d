"""`numharden inject --variation ...`: the varied file is exactly the library's draw."""

import json

import numpy as np
from typer.testing import CliRunner

from numharden.crossbar import CrossbarInjector, VariationSpec
from numharden.io import load_model, save_model
from numharden.models import build
from numharden_cli.app import app

runner = CliRunner()


def test_inject_variation_writes_the_draw(tmp_path):
    m = build("lenet5", weight_format="int8/ch", seed=1)
    save_model(m, tmp_path / "m.h5")
    r = runner.invoke(app, ["inject", str(tmp_path / "m.h5"), "--variation", "lognormal",
                            "--sigma", "0.2", "--cell-bits", "2", "--stuck-off", "0.01",
                            "--seed", "7", "-o", str(tmp_path / "v.h5"), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout.strip().splitlines()[-1])
    v = load_model(tmp_path / "v.h5")
    spec = VariationSpec.from_dict(v.meta["variation"]["spec"])
    assert spec == VariationSpec("lognormal", 0.2, cell_bits=2, stuck_off=0.01)
    weights = [n.params["weight"] for n in m.graph.nodes if n.op in ("conv2d", "linear")]
    inj = CrossbarInjector(m, spec, include=weights)
    want = inj.effective(inj.draw(np.random.default_rng(7)), read=0)
    for name in weights:
        assert v.params[name].fmt.spec == "fp32"
        assert np.array_equal(v.params[name].codes, want[name])
    assert d["n_stuck_off"] > 0 and d["tensors"] == weights


def test_inject_variation_errors(tmp_path):
    m = build("lenet5", weight_format="int8/ch", seed=1)
    save_model(m, tmp_path / "m.h5")
    for args, msg in ((["--sigma", "0.1"], "--sigma needs"),
                      (["--variation", "lognormal", "--pcm"], "not both"),
                      (["--variation", "lognormal", "--ber", "1e-3"], "not both"),
                      (["--variation", "cauchy", "--sigma", "1"], "programming")):
        r = runner.invoke(app, ["inject", str(tmp_path / "m.h5"), *args, "-o",
                                str(tmp_path / "x.h5")])
        assert r.exit_code == 2, r.output
        assert r.stderr.startswith("error:") and msg in r.stderr, r.stderr


def test_crossbar_options_without_a_variation_model_are_refused(tmp_path):
    """No option accepted and ignored: --mapping etc. alone would change nothing."""
    m = build("lenet5", weight_format="int8/ch", seed=1)
    save_model(m, tmp_path / "m.h5")
    for cmd, extra in ((["inject"], ["--ber", "1e-3", "-o", str(tmp_path / "x.h5")]),
                       (["sweep"], ["--ber", "1e-3", "--trials", "1", "--images", "32",
                                    "--out", str(tmp_path / "s"), "--no-plot"])):
        for args in (["--mapping", "offset"], ["--g-max", "40"], ["--scaling", "column"],
                     ["--drift-compensation"]):
            r = runner.invoke(app, [*cmd, str(tmp_path / "m.h5"), *args, *extra])
            assert r.exit_code == 2, (cmd, args, r.output)
            assert r.stderr.startswith("error:") and "only apply to crossbar" in r.stderr
            assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "s").exists()


def test_sweep_read_noise_alone_is_a_variation_campaign(tmp_path):
    m = build("lenet5", weight_format="int8/ch", seed=1)
    save_model(m, tmp_path / "m.h5")
    r = runner.invoke(app, ["sweep", str(tmp_path / "m.h5"), "--read-noise", "0.05",
                            "--ber", "1e-4", "--trials", "2", "--images", "64",
                            "--out", str(tmp_path / "s"), "--no-plot", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["spec"]["variation"]["read_noise"] == 0.05, d["spec"]
