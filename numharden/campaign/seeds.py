"""Per-trial seeds keyed by (campaign seed, BER, trial index[, group]).

Every trial draws its randomness from its own :class:`numpy.random.SeedSequence`
with ``entropy = campaign seed`` and ``spawn_key = (ber_key, trial)`` (or
``(ber_key, trial, group_key)`` in a breakdown campaign). The seed therefore depends on
nothing but the trial's identity: serial, multi-process, Dask and sharded runs, and a
resumed run, hand every trial exactly the same seed whatever the number of workers or
the order in which trials finish.
"""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np

from ..errors import ConfigError

__all__ = ["ber_key", "group_key", "trial_seed", "check_group"]


def ber_key(ber: float) -> int:
    """Stable non-negative integer encoding of a bit-error rate: its float64 bit pattern.

    ``-0.0`` is folded onto ``0.0`` so that equal rates get equal keys.
    """
    ber = float(ber) + 0.0  # -0.0 + 0.0 == +0.0
    if not math.isfinite(ber) or ber < 0.0:
        raise ConfigError(f"bit-error rate {ber!r} is not a finite number >= 0; "
                          f"give rates such as 1e-5")
    return struct.unpack("<Q", struct.pack("<d", ber))[0]


def check_group(group) -> None:
    """Raise :class:`ConfigError` unless ``group`` is None, a str or an int (not bool)."""
    if group is None or isinstance(group, str):
        return
    if isinstance(group, (int, np.integer)) and not isinstance(group, (bool, np.bool_)):
        return
    raise ConfigError(f"breakdown group {group!r} has type {type(group).__name__}; "
                      f"expected a str (e.g. a layer name) or an int (e.g. a bit index)")


def group_key(group) -> int:
    """Stable 64-bit integer for a breakdown group (str or int), from SHA-256.

    The type is part of the hash, so the layer ``'3'`` and the bit ``3`` differ.
    """
    check_group(group)
    if group is None:
        raise ConfigError("group_key(None): an ungrouped trial has no group key")
    tag = f"s:{group}" if isinstance(group, str) else f"i:{int(group)}"
    return int.from_bytes(hashlib.sha256(tag.encode("utf-8")).digest()[:8], "little")


def trial_seed(campaign_seed: int, ber: float, trial: int, group=None) -> int:
    """Seed of one trial: a 128-bit integer drawn from its own SeedSequence.

    Parameters
    ----------
    campaign_seed : int
        The campaign's seed (>= 0), used as the SeedSequence entropy.
    ber : float
        Bit-error rate of the trial.
    trial : int
        Trial index at this (group, BER), >= 0.
    group : str or int, optional
        Breakdown group (layer name, bit index); None for an ungrouped campaign.

    Returns
    -------
    int
        ``0 <= seed < 2**128``; pass it to ``numpy.random.default_rng(seed)``.
    """
    if isinstance(campaign_seed, bool) or not isinstance(campaign_seed, (int, np.integer)) \
            or campaign_seed < 0:
        raise ConfigError(f"campaign seed {campaign_seed!r} must be an int >= 0, e.g. 0")
    if isinstance(trial, bool) or not isinstance(trial, (int, np.integer)) or trial < 0:
        raise ConfigError(f"trial index {trial!r} must be an int >= 0")
    key = (ber_key(ber), int(trial))
    if group is not None:
        key = key + (group_key(group),)
    state = np.random.SeedSequence(int(campaign_seed), spawn_key=key).generate_state(
        2, np.uint64)
    return int(state[0]) | (int(state[1]) << 64)
