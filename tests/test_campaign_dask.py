"""A real 2-worker Dask LocalCluster gives exactly the serial run's per-trial results."""

import pytest

from naive_campaign import CountingSpec, builds, read_records, results_of
from numharden.campaign import CampaignConfig, SyntheticSpec, run_campaign

distributed = pytest.importorskip("distributed")

SPEC_KW = dict(n_images=200, n_bits=20_000, hit_prob=0.01, nan_prob=0.002)
CFG = CampaignConfig(bers=[5e-5, 2e-4, 1e-3], trials=4, seed=5, ci_width=0.01,
                     max_trials=40, round_size=3, groups=["conv1", 2])


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


def test_dask_local_cluster_equals_serial(tmp_path, client):
    serial = run_campaign(SyntheticSpec(**SPEC_KW), CFG, tmp_path / "serial")
    log = tmp_path / "log"
    log.mkdir()
    done = []
    res = run_campaign(CountingSpec(log, **SPEC_KW), CFG, tmp_path / "dask", client=client,
                       progress=done.append)
    want = results_of(read_records(tmp_path / "serial"))
    assert results_of(read_records(tmp_path / "dask")) == want
    assert res.rows == serial.rows and res.complete
    assert len(done) == len(want) and done[-1].done == len(want)
    # the runner was built once per worker process, not per trial or per chunk
    worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
    pids = builds(log)
    assert len(pids) == len(set(pids)) and set(pids) <= worker_pids
    # records were written by this (driving) process only, one file
    assert len(list((tmp_path / "dask" / "records").glob("*.jsonl"))) == 1
    workers = {r["worker"].rsplit("-", 1)[1] for r in read_records(tmp_path / "dask").values()}
    assert {int(w) for w in workers} <= worker_pids


def test_dask_by_scheduler_address_resumes(tmp_path, client):
    cfg = CampaignConfig(bers=[1e-4, 1e-3], trials=6, seed=8)
    run_campaign(SyntheticSpec(**SPEC_KW), cfg, tmp_path / "serial", shard=(0, 2))
    addr = client.scheduler.address
    # shard 1 runs on the cluster by address into the same store; the union is the campaign
    res = run_campaign(SyntheticSpec(**SPEC_KW), cfg, tmp_path / "serial", scheduler=addr,
                       shard=(1, 2), chunk_size=2)
    full = run_campaign(SyntheticSpec(**SPEC_KW), cfg, tmp_path / "ref")
    assert results_of(read_records(tmp_path / "serial")) == \
        results_of(read_records(tmp_path / "ref"))
    assert res.rows == full.rows


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    import dask

    from numharden.errors import ConfigError
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(ConfigError, match="cannot connect to the Dask scheduler"):
        run_campaign(SyntheticSpec(**SPEC_KW), CampaignConfig(bers=[1e-4], trials=2),
                     tmp_path / "x", scheduler="tcp://127.0.0.1:9")
