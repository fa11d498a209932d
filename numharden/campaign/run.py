"""Run, resume and merge campaigns.

:func:`run_campaign` is the one entry point: it opens (or creates) the store, plans the
missing trials, runs them on the chosen backend, records each as it arrives and returns
the :class:`~numharden.campaign.result.CampaignResult` of the whole store.
:func:`merge_stores` combines shard stores.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, FormatError
from .backends import (DaskBackend, ProcessBackend, SerialBackend, check_scheduler_address,
                       connect_timeout_of)
from .plan import BASELINE, Planner, check_shard
from .result import CampaignResult, summarize
from .spec import CampaignConfig, check_spec, check_trial_result
from .store import CampaignStore, same_result

__all__ = ["Progress", "run_campaign", "merge_stores"]


@dataclass(frozen=True)
class Progress:
    """Passed to the ``progress`` callback after every recorded trial.

    Attributes
    ----------
    done, planned : int
        Trials of this run's share that are stored / currently planned (``planned`` can
        grow while adaptive cells open new rounds).
    group, ber, trial : object, float, int
        The trial just recorded.
    accuracy : float
        Its top-1 accuracy.
    """

    done: int
    planned: int
    group: object
    ber: float
    trial: int
    accuracy: float


def _check_backend(workers, scheduler, client, chunk_size) -> None:
    chosen = [n for n, v in (("workers", workers if workers not in (None, 1) else None),
                             ("scheduler", scheduler), ("client", client)) if v is not None]
    if len(chosen) > 1:
        raise ConfigError(f"choose one execution backend, got {' and '.join(chosen)}; "
                          f"use workers=N for local processes or scheduler/client for Dask")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"workers={workers!r} must be an int >= 1, e.g. 4")
    if chunk_size is not None and (isinstance(chunk_size, bool) or
                                   not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"chunk_size={chunk_size!r} must be an int >= 1 (or None: auto)")
    if chunk_size is not None and scheduler is None and client is None \
            and workers in (None, 1):
        raise ConfigError(f"chunk_size={chunk_size} only applies to workers > 1 or a Dask "
                          f"cluster; drop it for a serial run")


def _backend(spec, key, workers, scheduler, client, chunk_size, connect_timeout=None):
    if scheduler is not None or client is not None:
        return DaskBackend(spec, key, client=client, scheduler=scheduler,
                           chunk_size=chunk_size, connect_timeout=connect_timeout)
    if workers is not None and workers > 1:
        return ProcessBackend(spec, workers, chunk_size or 1)
    return SerialBackend(spec)


def run_campaign(spec, config: CampaignConfig, out, *, workers: int | None = None,
                 scheduler: str | None = None, client=None, shard=None,
                 chunk_size: int | None = None, progress=None,
                 connect_timeout: float | None = None) -> CampaignResult:
    """Run (or resume) a Monte-Carlo fault campaign and return its summary.

    Parameters
    ----------
    spec : trial spec
        Picklable object with ``describe() -> dict``, ``model_checksum() -> str`` and
        ``build() -> runner`` (see :mod:`numharden.campaign`).
    config : CampaignConfig
        BERs, trials, seed, stopping rule, groups.
    out : str or Path
        Store directory; created if missing, resumed if it holds the same campaign. A
        store of the same campaign with another plan (fewer or more trials or BERs, a
        stopping rule) is extended: its finished trials are reused, only missing ones
        run (see :mod:`numharden.campaign.store`).
    workers : int, optional
        Local processes (1 or None: run in this process).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    client : distributed.Client, optional
        An existing Dask client (not closed here).
    shard : (int, int), optional
        Run only shard ``i`` of ``n`` (see :mod:`numharden.campaign.plan`).
    chunk_size : int, optional
        Trials per task sent to a worker (default 1 for processes, auto for Dask).
    progress : callable, optional
        Called with a :class:`Progress` after every recorded trial.
    connect_timeout : float, optional
        Seconds to wait for the Dask scheduler (default config ``connect_timeout``, 5 s);
        the address is validated before connecting.

    Returns
    -------
    CampaignResult
        Summary of this ``config``'s plan over everything in the store (all shards
        present in it, not only this run).

    Raises
    ------
    ConfigError
        Bad options, or the store holds a different campaign.
    FormatError
        Damaged store, or a runner result that breaks the protocol.
    """
    if not isinstance(config, CampaignConfig):
        raise ConfigError(f"config must be a CampaignConfig, got {type(config).__name__}")
    _check_backend(workers, scheduler, client, chunk_size)
    if scheduler is not None:  # refuse a bad or dead address before touching the store
        scheduler = check_scheduler_address(scheduler, connect_timeout_of(connect_timeout))
    desc, checksum = check_spec(spec)
    shard = check_shard(shard)
    if progress is not None and not callable(progress):
        raise ConfigError(f"progress={progress!r} must be callable or None")
    store = CampaignStore.create_or_open(out, config, desc, checksum)
    planner = Planner(config, store.load().records, shard)
    tasks = planner.take()
    if tasks:
        with _backend(spec, store.key, workers, scheduler, client, chunk_size,
                      connect_timeout) as backend, \
                store.writer() as writer:
            backend.submit(tasks)
            while backend.pending():
                for task, res, duration, wid in backend.wait():
                    where = f"trial (group={task[0]!r}, ber={task[1]!r}, trial={task[2]})"
                    res = check_trial_result(res, where)
                    if task[:3] == BASELINE and (res["n_faults"] or res["sdc"]):
                        raise FormatError(
                            f"the baseline {where} must be the fault-free evaluation, but "
                            f"the runner reported n_faults={res['n_faults']}, sdc="
                            f"{res['sdc']}; a runner must inject no fault at BER 0")
                    rec = writer.write(task, res, duration, wid)
                    planner.add(rec)
                    if progress is not None:
                        progress(Progress(planner.done(), planner.planned(), task[0],
                                          task[1], task[2], res["correct"] / res["n_images"]))
                backend.submit(planner.take())
    assert planner.finished(), "planner left trials unissued"
    return summarize(store, config)


def merge_stores(sources, out) -> CampaignResult:
    """Combine the records of shard stores into the store ``out``.

    Parameters
    ----------
    sources : sequence of str or Path
        Store directories of the same campaign (same configuration, spec and model).
    out : str or Path
        Destination store; created, or opened if it holds the same campaign (it may be
        one of ``sources``). Records already in ``out`` are not copied again.

    Returns
    -------
    CampaignResult
        Summary of the merged store.

    Raises
    ------
    ConfigError
        A source holds a different campaign (the message names it and what differs).
    FormatError
        A source is damaged, or two sources disagree on a trial's result.
    """
    sources = [sources] if isinstance(sources, (str, bytes)) else list(sources)
    if not sources:
        raise ConfigError("merge needs at least one source store directory")
    stores = [CampaignStore.open(s) for s in sources]
    first = stores[0]
    ref = {k: first.header[k] for k in ("config", "spec", "model_checksum")}
    for s in stores[1:]:
        diffs = s.differences(ref, f"{s.path} has", f"{first.path} has")
        if diffs:
            raise ConfigError(f"cannot merge {s.path} into {out}: it holds a different "
                              f"campaign than {first.path}: " + "; ".join(diffs)
                              + ". Merge only shards of the same campaign (same options, "
                              "spec and model)")
    dest = CampaignStore.create_or_open(out, first.config, first.header["spec"],
                                        first.header["model_checksum"])
    have = dest.load().records
    with dest.writer() as writer:
        for s in stores:
            for key, rec in s.load().records.items():
                prev = have.get(key)
                if prev is None:
                    writer.write_record(rec)
                    have[key] = rec
                elif not same_result(prev, rec):
                    raise FormatError(
                        f"trial {key} differs between {s.path} and the merged store "
                        f"{dest.path}; the sources come from non-deterministic runs; "
                        f"re-run the affected shard into a fresh directory")
    return summarize(dest)

