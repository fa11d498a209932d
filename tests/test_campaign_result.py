"""Result rows for partial stores, JSON output and the accuracy-vs-BER plot."""

import json
import sys
import xml.etree.ElementTree as ET

import pytest

from numharden.campaign import CampaignConfig, SyntheticSpec, plot_sweep, run_campaign, summarize
from numharden.errors import ConfigError

SPEC = SyntheticSpec(n_images=200, n_bits=20_000, hit_prob=0.01)
CFG = CampaignConfig(bers=[0.0, 1e-5, 1e-4, 1e-3], trials=5, seed=4)


def test_partial_store_rows_are_marked_incomplete(tmp_path):
    res = run_campaign(SPEC, CFG, tmp_path / "c", shard=(0, 2))
    assert not res.complete
    for row in res.rows:
        assert row.planned == 5 and not row.complete and 1 <= row.trials < 5
    full = run_campaign(SPEC, CFG, tmp_path / "c")
    assert full.complete and all(r.complete and r.trials == 5 for r in full.rows)


def test_missing_baseline_gives_no_drop(tmp_path):
    run_campaign(SPEC, CFG, tmp_path / "c")
    st = summarize(tmp_path / "c")
    from numharden.campaign.result import summarize_records
    from numharden.campaign.store import CampaignStore
    recs = dict(CampaignStore.open(tmp_path / "c").load().records)
    del recs[(None, 0.0, 0)]
    base, rows, complete = summarize_records(st.config, recs)
    assert base is None and not complete
    assert all(r.acc_drop is None and r.drop_ci_lo is None for r in rows)
    assert rows[0].trials == 4  # the BER-0 cell lost its trial 0 (the same key)


def test_to_dict_is_plain_json(tmp_path):
    res = run_campaign(SPEC, CampaignConfig(bers=[1e-4], trials=3, groups=["a", 1]),
                       tmp_path / "c")
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["config"]["groups"] == ["a", 1] and d["baseline_acc"] == 0.9
    assert [r["group"] for r in d["rows"]] == ["a", 1]
    assert set(d["rows"][0]) >= {"ber", "trials", "mean_acc", "ci_lo", "ci_hi", "acc_drop",
                                 "sdc_rate", "sdc_ci_lo", "sdc_ci_hi", "nonfinite_rate",
                                 "mean_faults", "mean_masked"}


def test_plot_sweep_writes_png_and_svg(tmp_path):
    res = run_campaign(SPEC, CFG, tmp_path / "c")
    paths = plot_sweep(res, tmp_path / "fig" / "sweep")
    assert [p.name for p in paths] == ["sweep.png", "sweep.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    root = ET.parse(paths[1]).getroot()
    assert root.tag.endswith("svg")
    text = paths[1].read_text()
    assert "bit-error rate" in text and "fault-free 90.00%" in text
    grouped = run_campaign(SyntheticSpec(group_scale=(("x", 2.0),)),
                           CampaignConfig(bers=[1e-5, 1e-4], trials=3, groups=["x", "y"]),
                           tmp_path / "g")
    svg = plot_sweep(grouped, tmp_path / "g2", title="per layer")[1].read_text()
    assert "per layer" in svg and "x (mean, 95% CI)" in svg and "y (mean, 95% CI)" in svg


def test_plot_errors(tmp_path, monkeypatch):
    only_zero = run_campaign(SPEC, CampaignConfig(bers=[0.0], trials=2), tmp_path / "z")
    with pytest.raises(ConfigError, match="no summarised BER > 0"):
        plot_sweep(only_zero, tmp_path / "z")
    res = run_campaign(SPEC, CFG, tmp_path / "c")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import now fails
    with pytest.raises(ConfigError, match=r"needs matplotlib.*numharden\[plot\]"):
        plot_sweep(res, tmp_path / "p")
