"""Private Numba kernels behind :mod:`numharden.ops`.

Every kernel is an ``@njit(cache=True, nogil=True)`` function taking arrays and scalars
only; the public wrappers in :mod:`numharden.ops` validate, coerce and allocate. The
public names here are :func:`set_threads`, the single place where numharden decides
how many threads its parallel kernels use, and :func:`keep_freed_memory`, which tells
glibc's malloc to keep large freed buffers for reuse.
"""

from __future__ import annotations

import ctypes
import os

import numba

from .. import config
from ..errors import ConfigError

__all__ = ["set_threads", "get_threads", "get_blas_threads", "keep_freed_memory"]


def set_threads(n: int | None = None, *, blas: int | None = None) -> int:
    """Set the number of threads used by parallel kernels and return it.

    Also caps the BLAS library numpy calls for matrix products (linear layers) at
    ``blas`` threads -- a process-wide setting, through threadpoolctl.

    Parameters
    ----------
    n : int, optional
        Thread count; ``0`` means all cores numba was started with. ``None`` reads the
        ``threads`` setting of :mod:`numharden.config` (env ``NUMHARDEN_THREADS``).
    blas : int, optional, keyword-only
        BLAS thread cap; ``0`` leaves the BLAS library alone. ``None`` reads the
        ``blas_threads`` setting (env ``NUMHARDEN_BLAS_THREADS``, default 1: numharden's
        parallelism is numba's, and spinning BLAS threads would compete with it).

    Returns
    -------
    int
        The thread count now in effect.
    """
    if n is None:
        n = config.get("threads")
    available = numba.config.NUMBA_NUM_THREADS
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ConfigError(f"thread count must be an int >= 0 (0 = all {available} cores), "
                          f"found {n!r}; pass e.g. set_threads(0)")
    if n > available:
        raise ConfigError(f"thread count {n} exceeds the {available} threads numba was "
                          f"started with; pass at most {available} or set NUMBA_NUM_THREADS "
                          "before importing numharden")
    if blas is None:
        blas = config.get("blas_threads")
    if not isinstance(blas, int) or isinstance(blas, bool) or blas < 0:
        raise ConfigError(f"BLAS thread count must be an int >= 0 (0 = leave BLAS alone), "
                          f"found {blas!r}; set NUMHARDEN_BLAS_THREADS to e.g. 1")
    numba.set_num_threads(n if n else available)
    if blas:
        _limit_blas(blas)
    return numba.get_num_threads()


def _limit_blas(n: int) -> None:
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n, user_api="blas")  # persists: used as a call, not a context


def get_blas_threads() -> int | None:
    """Threads of the BLAS library numpy uses (None if threadpoolctl finds none)."""
    from threadpoolctl import threadpool_info
    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return min(counts) if counts else None


def get_threads() -> int:
    """Number of threads parallel kernels currently use."""
    return numba.get_num_threads()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError, TypeError):  # no confstr / unknown name / None
        return False


def keep_freed_memory(mib: int | None = None) -> bool:
    """Let glibc's malloc keep up to ``mib`` MiB of freed memory for reuse.

    numpy takes every array from malloc. glibc serves blocks above its mmap threshold
    (dynamic, at most 32 MiB) with fresh ``mmap`` pages and unmaps them when freed, so
    a network whose activations are tens of MiB page-faults -- and has the kernel
    zero -- every buffer again in every forward pass: 5 % of a ResNet-18 pass at batch
    256. Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to ``mib`` keeps such
    buffers in the heap for the next pass (the same setting the PyTorch baseline of
    ``bench/`` gets through ``MALLOC_MMAP_THRESHOLD_``). The cost: memory freed by the
    process stays with it, up to its peak use. Process-wide; applied at import with
    the ``malloc_keep_mb`` setting (env ``NUMHARDEN_MALLOC_KEEP_MB``, 0 = off).

    Parameters
    ----------
    mib : int, optional
        Threshold in MiB; ``None`` reads ``malloc_keep_mb``; ``0`` changes nothing.

    Returns
    -------
    bool
        Whether malloc accepted the setting (False off glibc or with ``mib == 0``).
    """
    if mib is None:
        mib = config.get("malloc_keep_mb")
    if not isinstance(mib, int) or isinstance(mib, bool) or not 0 <= mib <= 2047:
        raise ConfigError(f"malloc_keep_mb must be an int in [0, 2047] MiB, found {mib!r}; "
                          "set NUMHARDEN_MALLOC_KEEP_MB to e.g. 1024, or 0 to leave malloc alone")
    if mib == 0 or not _is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    limit = mib << 20
    return bool(mallopt(_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_M_TRIM_THRESHOLD, limit))


# Apply the configured thread count and malloc policy once, when the kernels are first
# imported.
try:  # a bad NUMHARDEN_* value must not break the import: commands report it
    set_threads()   # (config.check_environment) and library calls raise when they read it
except ConfigError:
    pass
try:
    keep_freed_memory()
except ConfigError:
    pass
