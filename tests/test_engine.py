"""The campaign engine trial against an independent re-computation of the same faults."""

import numpy as np
import pytest

from numharden.campaign import CampaignConfig, run_campaign, trial_seed
from numharden.campaign.engine import FaultSweepSpec
from numharden.errors import ConfigError, MissingTensorError
from numharden.faults import FaultInjector, FaultModel
from numharden.io import load_model, save_model
from numharden.models import build


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    m = build("lenet5", weight_format="int4/ch", abits=4, seed=3)
    m.meta["normalization"] = {"mean": [0.286], "std": [0.353]}
    path = tmp_path_factory.mktemp("engine") / "lenet.h5"
    save_model(m, path)
    return str(path)


def _by_hand(model_file, spec, ber, seed):
    """Same trial computed without the runner: sample, apply, predict, compare."""
    from numharden.data import load_dataset
    m = load_model(model_file)
    data = load_dataset("fashion-mnist").subset(spec.images)
    clean = m.predict(data.images)
    names = [n.params["weight"] for n in m.graph.nodes if n.op in ("conv2d", "linear")]
    inj = FaultInjector(m, FaultModel(rate=ber, kind=spec.kind, include=tuple(names)))
    applied = inj.inject(np.random.default_rng(seed))
    pred = m.predict(data.images)
    return {"correct": int((pred == data.labels).sum()), "sdc": int((pred != clean).sum()),
            "n_faults": len(applied), "n_masked": applied.n_masked}


@pytest.mark.parametrize("kind", ["flip", "sa1"])
def test_weight_trial_matches_hand_computation(model_file, kind):
    spec = FaultSweepSpec(model=model_file, images=300, kind=kind)
    runner = spec.build()
    for trial in range(3):
        seed = trial_seed(7, 2e-3, trial)
        got = runner(2e-3, trial, seed)
        want = _by_hand(model_file, spec, 2e-3, seed)
        assert {k: got[k] for k in want} == want
        assert got["n_images"] == 300 and got["nonfinite"] == 0
    # the runner restored the clean model after every trial
    assert runner.model.checksum() == load_model(model_file).checksum()


def test_incremental_trials_equal_full_passes(model_file, monkeypatch):
    """Trials that start from recorded fault-free activations (the default) give the
    results of full forward passes (no records: campaign_cache_mb = 0), layer by layer."""
    spec = FaultSweepSpec(model=model_file, images=250, kind="flip", group_by="layer")
    fast = spec.build()
    assert fast._kept and set(fast._kept[0]) >= {"flatten", "relu4_q"}
    monkeypatch.setenv("NUMHARDEN_CAMPAIGN_CACHE_MB", "0")
    full = spec.build()
    assert full._kept is None
    calls = []
    original = fast.model.forward
    monkeypatch.setattr(fast.model, "forward",
                        lambda x, **kw: calls.append(kw.get("reuse") is not None) or
                        original(x, **kw))
    for group in spec.groups():
        for trial in range(2):
            seed = trial_seed(11, 5e-3, trial)
            calls.clear()
            a = fast(5e-3, trial, seed, group)
            assert calls and all(calls)  # the faulted pass was incremental
            assert a == full(5e-3, trial, seed, group) and a["n_faults"] > 0


def test_baseline_and_unchanged_trials_equal_clean(model_file):
    runner = FaultSweepSpec(model=model_file, images=200).build()
    r0 = runner(0.0, 0, 123)
    assert r0["sdc"] == 0 and r0["n_faults"] == 0
    assert r0["correct"] == int((runner.clean == runner.labels).sum())
    # at a tiny rate nothing is drawn, so nothing may change
    r = runner(1e-12, 0, 5)
    assert r["n_faults"] == 0 and r["sdc"] == 0 and r["correct"] == r0["correct"]


def test_activation_trial_changes_outputs_and_counts_faults(model_file):
    spec = FaultSweepSpec(model=model_file, images=200, target="activations")
    assert spec.targets() == ["relu1_q", "relu2_q", "relu3_q", "relu4_q"]
    runner = spec.build()
    r = runner(0.05, 0, 11)
    # 4-bit codes: expected faults = 0.05 * 4 bits * activations per image * images
    n_act = (6 * 28 * 28 + 16 * 10 * 10 + 120 + 84) * 200
    expected = 0.05 * 4 * n_act
    assert abs(r["n_faults"] - expected) < 5 * np.sqrt(expected)  # ~5 sigma
    assert r["sdc"] > 0
    again = runner(0.05, 0, 11)
    assert again == r  # the same seed gives the same transient faults


def test_groups_and_filters(model_file):
    spec = FaultSweepSpec(model=model_file, group_by="layer")
    assert spec.groups() == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]
    spec = FaultSweepSpec(model=model_file, group_by="bit")
    assert spec.groups() == [0, 1, 2, 3]
    spec = FaultSweepSpec(model=model_file, include=("fc*",), exclude=("*.bias",))
    assert spec.targets() == ["fc1.weight", "fc2.weight", "fc3.weight"]
    with pytest.raises(MissingTensorError, match="nothere"):
        FaultSweepSpec(model=model_file, include=("nothere*",)).targets()
    with pytest.raises(ConfigError, match="target"):
        FaultSweepSpec(model=model_file, target="memory")
    with pytest.raises(ConfigError, match="kind"):
        FaultSweepSpec(model=model_file, kind="melt")


def test_per_bit_trial_hits_only_that_bit(model_file):
    spec = FaultSweepSpec(model=model_file, images=50, group_by="bit")
    runner = spec.build()
    include, bits = runner._scope(3)
    inj = FaultInjector(runner.model, spec.fault_model(0.01, include, bits))
    faults = inj.sample(np.random.default_rng(0))
    assert len(faults) > 0 and set(faults.bit.tolist()) == {3}


def test_campaign_serial_equals_two_processes(model_file, tmp_path):
    spec = FaultSweepSpec(model=model_file, images=100)
    cfg = CampaignConfig(bers=[1e-3, 1e-2], trials=4, seed=2)
    a = run_campaign(spec, cfg, tmp_path / "serial")
    b = run_campaign(spec, cfg, tmp_path / "procs", workers=2)
    assert [r.to_dict() for r in a.rows] == [r.to_dict() for r in b.rows]
    assert a.baseline_acc == b.baseline_acc
