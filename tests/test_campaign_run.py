"""run_campaign / merge_stores against the naive loop twin; resume; backends; shards."""

import json
import math

import pytest

from naive_campaign import (RESULT_KEYS, CountingSpec, builds, naive_campaign,
                            naive_interval, naive_trial_seed, read_records, results_of)
from numharden.campaign import (CampaignConfig, SyntheticSpec, merge_stores, parse_shard,
                                run_campaign, summarize)
from numharden.errors import ConfigError, FormatError

SPEC = SyntheticSpec(n_images=200, n_bits=20_000, hit_prob=0.01, nan_prob=0.002)
FIXED = dict(bers=[0.0, 1e-5, 1e-4, 5e-4], trials=6, seed=11)
ADAPT = dict(bers=[5e-5, 2e-4, 1e-3], trials=4, seed=5, ci_width=0.01, max_trials=40,
             round_size=3)


def _naive(spec, **cfg):
    """Loop-twin campaign as ``key -> (seed, counts...)``, like ``results_of``."""
    res = naive_campaign(spec, **cfg)
    return {k: (naive_trial_seed(cfg["seed"], k[1], k[2], k[0]),)
            + tuple(r[f] for f in RESULT_KEYS) for k, r in res.items()}


@pytest.mark.parametrize("cfg", [FIXED, ADAPT, dict(FIXED, groups=["conv1", 3])])
def test_serial_run_equals_naive_twin(tmp_path, cfg):
    result = run_campaign(SPEC, CampaignConfig(**cfg), tmp_path / "c")
    got = results_of(read_records(tmp_path / "c"))
    assert got == _naive(SPEC, **cfg)
    assert result.complete and result.n_records == len(got)


def test_summary_rows_equal_naive_statistics(tmp_path):
    cfg = dict(ADAPT, bers=[0.0] + ADAPT["bers"])
    result = run_campaign(SPEC, CampaignConfig(**cfg), tmp_path / "c")
    ref = naive_campaign(SPEC, **cfg)
    base = ref[(None, 0.0, 0)]["correct"] / 200
    assert result.baseline_acc == base
    assert [r.ber for r in result.rows] == cfg["bers"]
    for row in result.rows:
        trials = [ref[k] for k in sorted(ref) if k[:2] == (None, row.ber)]
        assert row.trials == row.planned == len(trials) and row.complete
        acc = [t["correct"] / 200 for t in trials]
        if row.ber == 0.0:  # no fault can happen: the exact fault-free value
            assert (row.mean_acc, row.ci_lo, row.ci_hi, row.interval) == (base, base, base,
                                                                          "exact")
            assert row.trials == cfg["trials"]
            continue
        mean, lo, hi, half = naive_interval(acc)
        assert (row.mean_acc, row.ci_lo, row.ci_hi) == pytest.approx((mean, lo, hi),
                                                                     rel=1e-12)
        assert row.half_width <= cfg["ci_width"] or row.trials == cfg["max_trials"]
        assert row.acc_drop == pytest.approx(base - mean, rel=1e-12)
        assert (row.drop_ci_lo, row.drop_ci_hi) == pytest.approx((base - hi, base - lo))
        m, lo, hi, _ = naive_interval([t["sdc"] / 200 for t in trials])
        assert (row.sdc_rate, row.sdc_ci_lo, row.sdc_ci_hi) == pytest.approx((m, lo, hi))
        m, lo, hi, _ = naive_interval([t["nonfinite"] / 200 for t in trials])
        assert (row.nonfinite_rate, row.nonfinite_ci_lo, row.nonfinite_ci_hi) == \
            pytest.approx((m, lo, hi))
        assert row.mean_faults == pytest.approx(sum(t["n_faults"] for t in trials) / len(acc))
        assert row.mean_masked == pytest.approx(sum(t["n_masked"] for t in trials) / len(acc))
    # stopped on width after 1 extra round, after several, and at the cap
    assert [r.trials for r in result.rows[1:]] == [7, 19, 40]
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["rows"][1]["ber"] == cfg["bers"][1]
    assert summarize(tmp_path / "c").rows == result.rows


def test_resume_runs_only_missing_trials(tmp_path):
    cfg = CampaignConfig(**ADAPT)
    full = run_campaign(SPEC, cfg, tmp_path / "full")
    ref = read_records(tmp_path / "full")
    # interrupted run: a runner that fails on its 10th trial
    boom = SyntheticSpec(**{**SPEC.__dict__})
    calls = []

    class Failing(type(boom)):
        def build(self):
            inner = super().build()

            def runner(*a, **k):
                calls.append(a)
                if len(calls) == 10:
                    raise RuntimeError("node lost")
                return inner(*a, **k)
            return runner
    with pytest.raises(RuntimeError, match="node lost"):
        run_campaign(Failing(**SPEC.__dict__), cfg, tmp_path / "part")
    assert len(read_records(tmp_path / "part")) == 9
    seen = []
    again = run_campaign(SPEC, cfg, tmp_path / "part", progress=seen.append)
    assert results_of(read_records(tmp_path / "part")) == results_of(ref)
    assert len(seen) == len(ref) - 9 and seen[-1].done == seen[-1].planned == len(ref)
    assert again.rows == full.rows
    # nothing left: a third run runs nothing and builds no runner
    log = tmp_path / "log"
    log.mkdir()
    run_campaign(CountingSpec(log, **SPEC.__dict__), cfg, tmp_path / "part")
    assert builds(log) == []


def test_two_processes_equal_serial_and_build_once_per_worker(tmp_path):
    cfg = CampaignConfig(**ADAPT)
    run_campaign(SPEC, cfg, tmp_path / "serial")
    log = tmp_path / "log"
    log.mkdir()
    spec = CountingSpec(log, **SPEC.__dict__)
    res = run_campaign(spec, cfg, tmp_path / "proc", workers=2)
    assert results_of(read_records(tmp_path / "proc")) == \
        results_of(read_records(tmp_path / "serial"))
    pids = builds(log)
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)
    workers = {r["worker"] for r in read_records(tmp_path / "proc").values()}
    assert {int(w.rsplit("-", 1)[1]) for w in workers} <= set(pids)
    assert res.rows == summarize(tmp_path / "serial").rows


@pytest.mark.parametrize("cfg", [FIXED, ADAPT])
def test_shards_and_merge_equal_serial(tmp_path, cfg):
    cfg = CampaignConfig(**cfg)
    serial = run_campaign(SPEC, cfg, tmp_path / "serial")
    parts = []
    for i in range(3):
        r = run_campaign(SPEC, cfg, tmp_path / f"s{i}", shard=(i, 3))
        parts.append(set(read_records(tmp_path / f"s{i}")))
        assert not r.complete
    baseline = (None, 0.0, 0)
    assert all(baseline in p for p in parts)  # every shard measures the baseline
    others = [p - {baseline} for p in parts]
    assert not (others[0] & others[1]) and not (others[1] & others[2])
    merged = merge_stores([tmp_path / f"s{i}" for i in range(3)], tmp_path / "m")
    assert results_of(read_records(tmp_path / "m")) == \
        results_of(read_records(tmp_path / "serial"))
    assert merged.rows == serial.rows and merged.complete
    # merging again, or into a source, adds nothing and stays equal
    merge_stores([tmp_path / "s0", tmp_path / "m"], tmp_path / "m")
    assert len(list((tmp_path / "m" / "records").glob("*.jsonl"))) == 1
    assert merge_stores([tmp_path / "s1"], tmp_path / "s0").n_records < merged.n_records


def test_shards_can_share_one_directory(tmp_path):
    cfg = CampaignConfig(**FIXED)
    run_campaign(SPEC, cfg, tmp_path / "serial")
    for i in range(2):
        run_campaign(SPEC, cfg, tmp_path / "shared", shard=(i, 2))
    assert results_of(read_records(tmp_path / "shared")) == \
        results_of(read_records(tmp_path / "serial"))
    assert summarize(tmp_path / "shared").complete


def test_merge_refuses_other_campaigns(tmp_path):
    run_campaign(SPEC, CampaignConfig(**FIXED), tmp_path / "a", shard=(0, 2))
    run_campaign(SPEC, CampaignConfig(**dict(FIXED, seed=12)), tmp_path / "b", shard=(1, 2))
    with pytest.raises(ConfigError, match=r"cannot merge .*b into .*m: .*seed: .*b has 12, "
                                          r".*a has 11.*same campaign"):
        merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    with pytest.raises(ConfigError, match="at least one"):
        merge_stores([], tmp_path / "m")
    with pytest.raises(ConfigError, match="not a numharden campaign store"):
        merge_stores([tmp_path / "nope"], tmp_path / "m")


def test_breakdown_groups_and_ranking(tmp_path):
    from numharden.campaign import rank_groups
    spec = SyntheticSpec(n_images=300, n_bits=20_000, hit_prob=0.01,
                         group_scale=(("conv1", 4.0), ("fc", 0.25), (7, 1.0)))
    cfg = CampaignConfig(bers=[1e-4, 3e-4], trials=8, seed=2, groups=["fc", "conv1", 7])
    res = run_campaign(spec, cfg, tmp_path / "g")
    assert res.groups() == ["fc", "conv1", 7] and len(res.rows) == 6
    ranked = rank_groups(res, ber=3e-4)
    assert [d["group"] for d in ranked] == ["conv1", 7, "fc"]
    assert [d["rank"] for d in ranked] == [1, 2, 3]
    row = [r for r in res.rows_for("conv1") if r.ber == 3e-4][0]
    assert (ranked[0]["acc_drop"], ranked[0]["drop_ci_lo"]) == (row.acc_drop, row.drop_ci_lo)
    mean_rank = rank_groups(res)
    assert [d["group"] for d in mean_rank] == ["conv1", 7, "fc"]
    assert mean_rank[0]["drop_ci_lo"] is None and mean_rank[0]["acc_drop"] == pytest.approx(
        sum(r.acc_drop for r in res.rows_for("conv1")) / 2)
    with pytest.raises(ConfigError, match="not one of this campaign's rates"):
        rank_groups(res, ber=1e-3)
    plain = run_campaign(SPEC, CampaignConfig(**FIXED), tmp_path / "p")
    with pytest.raises(ConfigError, match="needs a breakdown campaign"):
        rank_groups(plain)


def test_option_errors(tmp_path):
    cfg = CampaignConfig(**FIXED)
    with pytest.raises(ConfigError, match="choose one execution backend"):
        run_campaign(SPEC, cfg, tmp_path / "x", workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="workers=0"):
        run_campaign(SPEC, cfg, tmp_path / "x", workers=0)
    with pytest.raises(ConfigError, match="chunk_size"):
        run_campaign(SPEC, cfg, tmp_path / "x", chunk_size=0, workers=2)
    with pytest.raises(ConfigError, match="only applies to workers > 1"):
        run_campaign(SPEC, cfg, tmp_path / "x", chunk_size=4)
    with pytest.raises(ConfigError, match="no method describe"):
        run_campaign(object(), cfg, tmp_path / "x")
    with pytest.raises(ConfigError, match="CampaignConfig"):
        run_campaign(SPEC, FIXED, tmp_path / "x")
    with pytest.raises(ConfigError, match="progress"):
        run_campaign(SPEC, cfg, tmp_path / "x", progress=3)
    with pytest.raises(ConfigError, match="shard"):
        run_campaign(SPEC, cfg, tmp_path / "x", shard=(3, 3))
    with pytest.raises(ConfigError, match="gets no work"):
        run_campaign(SPEC, CampaignConfig(**ADAPT), tmp_path / "y", shard=(3, 4))
    assert parse_shard("2/10") == (2, 10)
    for bad in ("10/10", "1-4", "a/b", "-1/3"):
        with pytest.raises(ConfigError, match="shard"):
            parse_shard(bad)


@pytest.mark.parametrize("kw, match", [
    (dict(bers=[]), "empty"), (dict(bers=1e-5), "sequence"), (dict(bers=[1e-5, 1e-5]),
                                                               "repeats"),
    (dict(bers=[2.0]), "exceeds 1"), (dict(bers=[-1e-3]), ">= 0"),
    (dict(bers=[1e-5], trials=0), "trials"), (dict(bers=[1e-5], seed=-2), "seed"),
    (dict(bers=[1e-5], ci_width=0.01), "needs max_trials"),
    (dict(bers=[1e-5], ci_width=1.5, max_trials=9), "ci_width"),
    (dict(bers=[1e-5], ci_width=0.01, max_trials=5, trials=10), "max_trials"),
    (dict(bers=[1e-5], ci_width=0.01, max_trials=50, trials=1), "trials"),
    (dict(bers=[1e-5], max_trials=50), "only apply with ci_width"),
    (dict(bers=[1e-5], groups=["a", "a"]), "without repeats"),
    (dict(bers=[1e-5], groups=[1.5]), "group"), (dict(bers=[1e-5], confidence=1.0),
                                                 "confidence"),
])
def test_config_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        CampaignConfig(**kw)


class _BadSpec(SyntheticSpec):
    def build(self):
        inner = super().build()
        mode = self.model_tag

        def runner(ber, trial, seed):
            r = inner(ber, trial, seed)
            if mode == "missing":
                r.pop("sdc")
            elif mode == "too-many" and ber > 0:
                r["correct"] = r["n_images"] + 1
            elif mode == "faulty-baseline":
                r["n_faults"] += 1
            return r
        return runner


@pytest.mark.parametrize("mode, match", [("missing", "sdc=None"),
                                         ("too-many", "inconsistent"),
                                         ("faulty-baseline", "fault-free evaluation")])
def test_runner_protocol_violations(tmp_path, mode, match):
    with pytest.raises(FormatError, match=match):
        run_campaign(_BadSpec(model_tag=mode), CampaignConfig(**FIXED), tmp_path / mode)


def test_extra_result_fields_are_stored(tmp_path):
    class Extra(SyntheticSpec):
        def build(self):
            inner = super().build()
            return lambda b, t, s: dict(inner(b, t, s), flipped_bits=[t, 1])
    run_campaign(Extra(), CampaignConfig(bers=[1e-5], trials=2), tmp_path / "e")
    recs = read_records(tmp_path / "e")
    assert recs[(None, 1e-5, 1)]["extra"] == {"flipped_bits": [1, 1]}
    assert math.isclose(summarize(tmp_path / "e").rows[0].trials, 2)


def test_more_trials_and_rates_extend_a_store(tmp_path):
    """Issue 10 item 4: a larger plan reuses the finished trials and runs only new ones;
    the result equals a fresh run of that plan; a smaller plan runs nothing."""
    small = CampaignConfig(bers=[1e-4], trials=4, seed=5)
    big = CampaignConfig(bers=[1e-4, 1e-3], trials=7, seed=5)
    run_campaign(SPEC, small, tmp_path / "s")
    first = read_records(tmp_path / "s")
    ran = []
    res = run_campaign(SPEC, big, tmp_path / "s", progress=ran.append)
    assert sorted((p.ber, p.trial) for p in ran) == \
        [(1e-4, t) for t in range(4, 7)] + [(1e-3, t) for t in range(7)]
    after = read_records(tmp_path / "s")
    assert all(after[k] == rec for k, rec in first.items())  # old trials untouched
    fresh = run_campaign(SPEC, big, tmp_path / "f")
    assert res.rows == fresh.rows and results_of(after) == results_of(read_records(tmp_path / "f"))
    head = json.loads((tmp_path / "s" / "campaign.json").read_text())
    assert head["config"]["bers"] == [1e-4, 1e-3] and head["config"]["trials"] == 7
    assert res.campaign_key == fresh.campaign_key  # one identity for every plan
    ran.clear()
    again = run_campaign(SPEC, small, tmp_path / "s", progress=ran.append)
    assert ran == [] and [r.trials for r in again.rows] == [4]
    assert again.rows == run_campaign(SPEC, small, tmp_path / "f4").rows
    assert [r.trials for r in summarize(tmp_path / "s").rows] == [7, 7]  # header: union
    # an adaptive plan continues from the stored trials as its first rounds
    adapt = CampaignConfig(bers=[1e-4, 1e-3], trials=4, seed=5, ci_width=0.004,
                           max_trials=13, round_size=3)
    ran.clear()
    res = run_campaign(SPEC, adapt, tmp_path / "s", progress=ran.append)
    assert res.rows == run_campaign(SPEC, adapt, tmp_path / "fa").rows
    assert all(p.trial >= 7 for p in ran)


def test_a_store_from_before_plan_free_keys_still_extends(tmp_path):
    """Headers whose key hashed the whole config (numharden before extension) open, run a
    larger plan with their own key on the records, and keep their header."""
    from numharden.campaign.store import _key
    small = CampaignConfig(bers=[1e-4], trials=3, seed=5)
    run_campaign(SPEC, small, tmp_path / "s")
    head_path = tmp_path / "s" / "campaign.json"
    head = json.loads(head_path.read_text())
    old_key = _key(head["config"], head["spec"], head["model_checksum"])
    head["campaign_key"] = old_key
    head_path.write_text(json.dumps(head))
    for f in (tmp_path / "s" / "records").iterdir():
        f.unlink()
    res = run_campaign(SPEC, CampaignConfig(bers=[1e-4], trials=5, seed=5), tmp_path / "s")
    assert res.campaign_key == old_key and [r.trials for r in res.rows] == [5]
    assert {r["key"] for r in read_records(tmp_path / "s").values()} == {old_key}
    assert json.loads(head_path.read_text())["config"]["trials"] == 3
