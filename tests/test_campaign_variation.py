"""Variation campaigns: a trial equals an independent draw + full forward, restores the
model bit-exactly, resumes identically, and labels its quantity."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from numharden.campaign import CampaignConfig, run_campaign, trial_seed
from numharden.campaign.variation import VariationSweepSpec
from numharden.crossbar import CrossbarInjector, VariationSpec
from numharden.errors import ConfigError
from numharden.io import save_model
from numharden.models import build
from numharden_cli.app import app


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    p = tmp_path_factory.mktemp("var") / "m.h5"
    m = build("lenet5", weight_format="int8/ch", seed=3,
              meta={"normalization": {"mean": [0.286], "std": [0.353]}})
    save_model(m, p)
    return str(p)


VAR = VariationSpec("lognormal", 0.0, cell_bits=2, read_noise=0.05, stuck_off=1e-3).to_dict()


def test_trial_equals_independent_draw_and_restores(path):
    spec = VariationSweepSpec(model=path, images=200, batch_size=100, variation=VAR,
                              quantity="sigma")
    runner = spec.build()
    before = runner.model.checksum()
    seed = trial_seed(0, 0.3, 1)
    rec = runner(0.3, 1, seed)
    assert runner.model.checksum() == before
    # independent: a fresh model, the same draw, full forward passes per batch
    from numharden.io import load_model
    m = load_model(path)
    names = [n.params["weight"] for n in m.graph.nodes if n.op in ("conv2d", "linear")]
    inj = CrossbarInjector(m, spec.level_spec(0.3), include=names)
    draw = inj.draw(np.random.default_rng(seed))
    x, labels = runner.x, runner.labels
    preds = []
    for i in range(2):
        inj.apply(draw, read=i)
        preds.append(m.forward(x[100 * i:100 * (i + 1)]).argmax(1))
        inj.restore()
    preds = np.concatenate(preds)
    assert rec["correct"] == int((preds == labels).sum())
    assert rec["sdc"] == int((preds != runner.clean).sum())
    assert rec["n_stuck_off"] == draw.n_stuck_off and rec["n_stuck_on"] == 0
    assert rec["sdc"] > 0


def test_campaign_resume_identical_and_quantity(path, tmp_path):
    spec = VariationSweepSpec(model=path, images=100, variation={"programming": "pcm",
                              "sigma": 1.0}, quantity="drift_time")
    cfg = CampaignConfig(bers=(60.0, 3600.0), trials=2, seed=1, quantity="drift_time")
    a = run_campaign(spec, cfg, tmp_path / "a").to_dict()
    b = run_campaign(spec, cfg, tmp_path / "a").to_dict()  # resume: nothing to run
    c = run_campaign(spec, cfg, tmp_path / "c").to_dict()
    assert a["rows"] == b["rows"] == c["rows"]
    assert a["quantity"] == {"name": "drift_time", "label": "drift time", "unit": "s"}
    with pytest.raises(ConfigError, match="exceeds 1"):
        CampaignConfig(bers=(2.0,), quantity="stuck_on")


def test_cli_variation_sweep(path, tmp_path):
    r = CliRunner().invoke(app, ["sweep", path, "--stuck-on", "0", "--stuck-on", "0.01",
                                 "--trials", "2", "--images", "50", "--out",
                                 str(tmp_path / "s"), "--no-plot", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["config"]["quantity"] == "stuck_on"
    rows = {row["ber"]: row for row in d["rows"]}
    assert rows[0.0]["mean_acc"] == d["baseline_acc"] and rows[0.01]["mean_faults"] > 0
    r = CliRunner().invoke(app, ["sweep", path, "--variation", "lognormal", "--sigma", "0",
                                 "--sigma", "0.1", "--stuck-on", "0.01", "--out",
                                 str(tmp_path / "t")])
    assert r.exit_code == 2 and "baseline" in r.stderr
