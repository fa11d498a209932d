"""numharden configuration: defaults plus ``NUMHARDEN_*`` environment overrides.

All tunables live here (house rule 12). Read them through :func:`get`, which applies the
environment override at call time, so a test or a worker process can change them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

DEFAULTS: dict[str, object] = {
    # inference batch size used by evaluation loops and campaigns
    "batch_size": 1000,
    # number of threads numba kernels may use (0 = all cores)
    "threads": 0,
    # threads of the BLAS library behind numpy's matrix products (linear layers). They
    # are small, and idle OpenBLAS threads spin for milliseconds after every call,
    # stealing the cores numba's workers need (LeNet-5 inference at 2 threads ran 2.7x
    # slower with OpenBLAS at its default); 0 leaves the BLAS library as it is
    "blas_threads": 1,
    # run float32 convolutions with whole 32-channel blocks on the AVX-512 kernel where
    # the CPU has AVX-512F (0: always the 8-lane kernels; the bits are the same)
    "wide_kernels": 1,
    # MiB of freed memory glibc's malloc may keep for reuse (mallopt M_MMAP_THRESHOLD
    # and M_TRIM_THRESHOLD, set when numharden's kernels are imported): by default
    # every freed buffer over 32 MiB goes back to the OS and the next forward pass
    # page-faults it in again (ResNet-18 at batch 256: 5 % of the pass); 0 leaves
    # malloc as it is. No effect off glibc.
    "malloc_keep_mb": 1024,
    # memory (MiB, per campaign worker) for fault-free activations that weight-fault
    # trials start from instead of recomputing the layers before the first fault
    "campaign_cache_mb": 1024.0,
    # where the Fashion-MNIST IDX files live besides the bundled test split
    "data_dir": "/usr/share/datasets/fashion-mnist",
    # default built-in model
    "default_model": "lenet5-fmnist-w4a4",
    # seconds to wait for a Dask scheduler to accept a connection
    "connect_timeout": 5.0,
}

_TYPES = {"batch_size": int, "threads": int, "blas_threads": int, "malloc_keep_mb": int, "wide_kernels": int,
          "campaign_cache_mb": float, "data_dir": str, "default_model": str,
          "connect_timeout": float}

# valid range of each numeric setting: (lowest, highest or None, what it means)
_RANGES = {
    "batch_size": (1, None, "images per inference batch"),
    "threads": (0, None, "numba threads, 0 = all cores"),
    "blas_threads": (0, None, "BLAS threads, 0 = leave the BLAS library as it is"),
    "malloc_keep_mb": (0, None, "MiB, 0 = leave malloc as it is"),
    "wide_kernels": (0, 1, "1 = use AVX-512 kernels where available, 0 = never"),
    "campaign_cache_mb": (0, None, "MiB per campaign worker"),
    "connect_timeout": (0.001, 3600, "seconds"),
}


def get(key: str):
    """Return setting ``key``, taking ``NUMHARDEN_<KEY>`` from the environment if set."""
    if key not in DEFAULTS:
        raise ConfigError(f"unknown setting {key!r}; known settings: {sorted(DEFAULTS)}")
    env = os.environ.get("NUMHARDEN_" + key.upper())
    if env is None:
        return DEFAULTS[key]
    name = f"NUMHARDEN_{key.upper()}"
    kind = _TYPES[key]
    lo, hi, meaning = _RANGES.get(key, (None, None, ""))
    expect = ("an integer" if kind is int else "a number" if kind is float else "a string")
    if lo is not None:
        expect += f" >= {lo}" if hi is None else f" in [{lo}, {hi}]"
    if meaning:
        expect += f" ({meaning})"
    try:
        value = kind(env)
    except ValueError:
        value = None
    if kind is float and value is not None and value != value:  # NaN
        value = None
    if value is None or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"environment variable {name}={env!r} must be {expect}; unset it "
                          f"or give e.g. {DEFAULTS[key]!r}")
    return value


def check_environment() -> None:
    """Validate every ``NUMHARDEN_*`` environment variable numharden reads (raises
    :class:`ConfigError` naming the first bad one and its valid range)."""
    for key in DEFAULTS:
        get(key)


def package_dir() -> Path:
    """Folder of the installed numharden package."""
    return Path(__file__).resolve().parent
