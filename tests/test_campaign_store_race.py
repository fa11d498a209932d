"""Concurrent creation of one campaign store (the documented case of batch-array shards
sharing one --out): no process ever fails, with or without hard links, and two different
campaigns never overwrite each other's header."""

import multiprocessing as mp
import os

import pytest

from numharden.campaign import CampaignConfig, SyntheticSpec
from numharden.campaign.spec import check_spec
from numharden.campaign.store import CampaignStore
from numharden.errors import ConfigError

PROCS, ROUNDS = 4, 200


def _create(root, rounds, barrier, seed_of, no_links, queue):
    if no_links:
        def refuse(*a, **k):
            raise OSError(95, "Operation not supported")
        os.link = refuse
    outcomes = []
    for r in range(rounds):
        cfg = CampaignConfig(bers=[1e-4], trials=2, seed=seed_of(r))
        desc, checksum = check_spec(SyntheticSpec(n_images=10))
        barrier.wait()
        try:
            st = CampaignStore.create_or_open(os.path.join(root, f"s{r}"), cfg, desc, checksum)
            outcomes.append(("ok", st.config.seed))
        except ConfigError as e:
            outcomes.append(("differs" if "holds a different campaign" in str(e) else str(e),
                             cfg.seed))
        except Exception as e:  # noqa: BLE001 -- reported to the parent
            outcomes.append((f"{type(e).__name__}: {e}", cfg.seed))
    queue.put(outcomes)


def _run(tmp_path, rounds, seeds, no_links):
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(PROCS), ctx.Queue()
    procs = [ctx.Process(target=_create, args=(str(tmp_path), rounds, barrier,
                                               seeds[i], no_links, queue))
             for i in range(PROCS)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    return results


def _seed_zero(r):
    return 0


@pytest.mark.parametrize("no_links", [False, True])
def test_many_processes_create_one_store_without_failures(tmp_path, no_links):
    results = _run(tmp_path, ROUNDS, [_seed_zero] * PROCS, no_links)
    bad = [o for res in results for o in res if o[0] != "ok"]
    assert not bad, bad[:5]
    assert sum(len(r) for r in results) == PROCS * ROUNDS


def _seed_even(r):
    return 0


def _seed_odd(r):
    return 1


@pytest.mark.parametrize("no_links", [False, True])
def test_two_campaigns_racing_for_one_store_never_overwrite(tmp_path, no_links):
    """Processes 0, 2 create campaign seed 0 and 1, 3 seed 1 in the same folders: in every
    round exactly one campaign owns the header, its creators succeed and the others are
    told the store holds a different campaign."""
    rounds = 60
    results = _run(tmp_path, rounds, [_seed_even, _seed_odd, _seed_even, _seed_odd], no_links)
    for r in range(rounds):
        owner = CampaignStore.open(tmp_path / f"s{r}").config.seed
        for res in results:
            status, seed = res[r]
            assert status == ("ok" if seed == owner else "differs"), (r, status)
        assert not [p for p in os.listdir(tmp_path / f"s{r}") if p.endswith(".lock")]
