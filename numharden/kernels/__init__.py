"""Private Numba kernels behind :mod:`numharden.ops`.

Every kernel is an ``@njit(cache=True, nogil=True)`` function taking arrays and scalars
only; the public wrappers in :mod:`numharden.ops` validate, coerce and allocate. The
one public name here is :func:`set_threads`, the single place where numharden decides
how many threads its parallel kernels use.
"""

from __future__ import annotations

import numba

from .. import config
from ..errors import ConfigError

__all__ = ["set_threads", "get_threads"]


def set_threads(n: int | None = None) -> int:
    """Set the number of threads used by parallel kernels and return it.

    Parameters
    ----------
    n : int, optional
        Thread count; ``0`` means all cores numba was started with. ``None`` reads the
        ``threads`` setting of :mod:`numharden.config` (env ``NUMHARDEN_THREADS``).

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
    numba.set_num_threads(n if n else available)
    return numba.get_num_threads()


def get_threads() -> int:
    """Number of threads parallel kernels currently use."""
    return numba.get_num_threads()


# Apply the configured thread count once, when the kernels are first imported.
set_threads()
