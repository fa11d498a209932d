"""Execution backends: serial, local processes, Dask distributed.

All backends take tasks ``(group, ber, trial, seed)`` from the driving process and
return outcomes ``(task, result, duration_s, worker_id)``; only the driving process
writes records. The trial runner is built once per worker process from the picklable
spec, never per trial:

* :class:`SerialBackend` builds it once in the calling process.
* :class:`ProcessBackend` builds it in each pool process's initializer
  (``concurrent.futures.ProcessPoolExecutor`` with the ``'spawn'`` start method, which is
  safe with threads and behaves the same on every OS).
* :class:`DaskBackend` scatters the spec once (broadcast) and keeps built runners in a
  per-process cache keyed by campaign key, so a Dask worker builds each campaign's runner
  once and reuses it for every chunk. A lock serialises a runner's trials when a worker
  has several threads (runners modify the model in place); start workers with one
  thread (``--nthreads 1``) and let the kernels use the cores.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import threading
import time

from .. import config
from ..errors import ConfigError
from .store import worker_id

__all__ = ["SerialBackend", "ProcessBackend", "DaskBackend", "run_tasks"]


def run_tasks(runner, tasks) -> list:
    """Run tasks with a built runner; return their outcomes in order."""
    out = []
    wid = worker_id()
    for task in tasks:
        group, ber, trial, seed = task
        t0 = time.perf_counter()
        if group is None:
            res = runner(ber, trial, seed)
        else:
            res = runner(ber, trial, seed, group=group)
        out.append((tuple(task), res, time.perf_counter() - t0, wid))
    return out


def _chunks(tasks, size):
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


class SerialBackend:
    """Runs trials one at a time in the calling process."""

    def __init__(self, spec):
        self._runner = spec.build()
        self._queue = []

    def submit(self, tasks) -> None:
        """Queue tasks ``(group, ber, trial, seed)``."""
        self._queue.extend(tasks)

    def pending(self) -> int:
        """Number of queued units of work (here: trials)."""
        return len(self._queue)

    def wait(self) -> list:
        """Run the next trial; return its outcome in a list."""
        return run_tasks(self._runner, [self._queue.pop(0)])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._queue.clear()


# ---------------------------------------------------------------- local processes
_PROCESS_RUNNER = None


def _init_process(spec, threads: int) -> None:
    global _PROCESS_RUNNER
    # keep N workers x M kernel threads within the machine (numharden.config 'threads')
    os.environ.setdefault("NUMHARDEN_THREADS", str(threads))
    _PROCESS_RUNNER = spec.build()


def _process_chunk(tasks) -> list:
    return run_tasks(_PROCESS_RUNNER, tasks)


class ProcessBackend:
    """``workers`` local processes; chunks of ``chunk_size`` trials per task."""

    def __init__(self, spec, workers: int, chunk_size: int = 1):
        threads = max(1, (os.cpu_count() or 1) // workers)
        self._pool = cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_process, initargs=(spec, threads))
        self._chunk = chunk_size
        self._futures = set()

    def submit(self, tasks) -> None:
        """Send tasks to the pool in chunks."""
        for chunk in _chunks(list(tasks), self._chunk):
            self._futures.add(self._pool.submit(_process_chunk, chunk))

    def pending(self) -> int:
        """Chunks submitted and not yet returned by :meth:`wait`."""
        return len(self._futures)

    def wait(self) -> list:
        """Block until at least one chunk is done; return the outcomes of all done."""
        done, self._futures = cf.wait(self._futures, return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            out.extend(fut.result())  # re-raises a worker's exception here
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- Dask distributed
_DASK_RUNNERS: dict = {}
_DASK_LOCK = threading.Lock()


def _dask_chunk(spec, token: str, tasks) -> list:
    """Run on a Dask worker: build (once per process) or reuse the runner, then run."""
    with _DASK_LOCK:
        entry = _DASK_RUNNERS.get(token)
        if entry is None:
            while len(_DASK_RUNNERS) >= 2:  # keep memory bounded across campaigns
                _DASK_RUNNERS.pop(next(iter(_DASK_RUNNERS)))
            entry = _DASK_RUNNERS[token] = (spec.build(), threading.Lock())
    runner, lock = entry
    with lock:
        return run_tasks(runner, tasks)


def connect_timeout_of(value) -> float:
    """Seconds to wait for a scheduler: ``value``, or config ``connect_timeout``."""
    t = config.get("connect_timeout") if value is None else value
    try:
        t = float(t)
    except (TypeError, ValueError):
        t = float("nan")
    if not 0 < t <= 3600:
        raise ConfigError(f"connect timeout {value!r} must be a number of seconds in "
                          f"(0, 3600], e.g. 5")
    return t


_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")


def check_scheduler_address(address, timeout: float) -> str:
    """Validate a Dask scheduler address before any connection attempt; for TCP-like
    schemes also check within ``timeout`` seconds that something accepts connections.

    Accepts ``scheme://host:port`` (schemes tcp, tls, ucx, ws, wss), ``inproc://...`` and
    ``host:port`` (taken as tcp). Returns the address with its scheme.

    Raises
    ------
    ConfigError
        One line naming the address, what was expected and how to fix it.
    """
    import socket

    fix = "give the scheduler's address as printed by dask-scheduler, e.g. tcp://host:8786"
    if not isinstance(address, str) or not address.strip():
        raise ConfigError(f"Dask scheduler address {address!r} is empty; {fix}")
    addr = address.strip()
    scheme, sep, rest = addr.partition("://")
    if not sep:
        scheme, rest = "tcp", addr
    if scheme not in _SCHEMES:
        raise ConfigError(f"Dask scheduler address {address!r}: unknown scheme {scheme!r} "
                          f"(known: {', '.join(_SCHEMES)}); {fix}")
    if scheme == "inproc":
        return addr
    host, colon, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or "/" in rest or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"Dask scheduler address {address!r} is not host:port with a port "
                          f"in 1..65535; {fix}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(f"cannot connect to the Dask scheduler at {address!r} within "
                          f"{timeout:g} s ({reason}); check the address and that the "
                          f"scheduler is running (--connect-timeout to wait longer)") from None
    return f"{scheme}://{rest}"


class DaskBackend:
    """Trials on a Dask cluster, given a ``client`` or a ``scheduler`` address.

    ``chunk_size=None`` picks about four chunks per worker for what is pending, at
    most 16 trials per chunk, so records arrive steadily while scheduler overhead
    stays small.
    """

    def __init__(self, spec, token: str, *, client=None, scheduler: str | None = None,
                 chunk_size: int | None = None, connect_timeout: float | None = None):
        if client is None:
            timeout = connect_timeout_of(connect_timeout)
            scheduler = check_scheduler_address(scheduler, timeout)
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise ConfigError("running on a Dask cluster needs dask.distributed: "
                              "pip install 'numharden[dask]'") from None
        self._own = client is None
        if client is None:
            try:
                client = Client(scheduler, set_as_default=False, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"cannot connect to the Dask scheduler at {scheduler!r} "
                                  f"within {timeout:g} s ({exc}); check the address (e.g. "
                                  f"tcp://host:8786) and that the scheduler is running") from None
        self._client = client
        self._ac = as_completed(loop=client.loop)
        self._token = token
        self._chunk = chunk_size
        self._spec = client.scatter(spec, broadcast=True, hash=False)
        self._n = 0

    def _chunk_size(self, n_tasks: int) -> int:
        if self._chunk is not None:
            return self._chunk
        workers = max(1, len(self._client.scheduler_info().get("workers", {})))
        return max(1, min(16, n_tasks // (4 * workers)))

    def submit(self, tasks) -> None:
        """Submit tasks to the cluster in chunks."""
        tasks = list(tasks)
        if not tasks:
            return
        for chunk in _chunks(tasks, self._chunk_size(len(tasks))):
            self._ac.add(self._client.submit(_dask_chunk, self._spec, self._token, chunk,
                                             pure=False))
            self._n += 1

    def pending(self) -> int:
        """Chunks submitted and not yet returned by :meth:`wait`."""
        return self._n

    def wait(self) -> list:
        """Block until at least one chunk is done; return the outcomes of all done."""
        out = []
        for fut in self._ac.next_batch(block=True):
            self._n -= 1
            out.extend(fut.result())  # re-raises a worker's exception here
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        futures = list(self._ac.futures) if hasattr(self._ac, "futures") else []
        if futures:
            self._client.cancel(futures)
        self._ac.clear()
        if self._own:
            self._client.close()
