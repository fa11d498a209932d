"""Which trials a campaign runs: fixed counts, adaptive rounds, shards.

The plan is a pure function of the configuration, the shard and the results recorded
so far, so every backend -- and a resumed run -- runs exactly the same set of trials.

* Fixed campaigns (no ``ci_width``) run trials ``0 .. trials-1`` in every (group, BER)
  cell. A shard ``(i, n)`` takes the pairs whose position ``p = cell_index * trials +
  trial`` in canonical order has ``p % n == i`` (round robin, so every shard gets a
  share of every cell).
* Adaptive campaigns run a cell in rounds: first ``trials`` trials, then ``round_size``
  more at a time. After a round is *complete* the accuracy interval of trials
  ``0 .. n-1`` decides whether to stop (half-width <= ``ci_width`` or ``n >=
  max_trials``). A shard takes whole cells (``cell_index % n == i``) because a stopping
  decision needs all of the cell's trials.
* Every shard also runs the *baseline*, trial 0 at BER 0 with no group: the fault-free
  evaluation that accuracy drops are measured against. Copies are identical and merge.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .seeds import trial_seed
from .spec import CampaignConfig
from .stats import mean_interval

__all__ = ["BASELINE", "parse_shard", "check_shard", "cell_trials", "trial_accuracy",
           "Planner"]

#: Key (group, ber, trial) of the fault-free baseline evaluation.
BASELINE = (None, 0.0, 0)


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``'i/n'`` (as given to ``--shard``) into ``(i, n)``, ``0 <= i < n``."""
    try:
        i, n = (int(s) for s in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"shard {text!r} is not of the form i/n, e.g. 0/10 for the first "
                          f"of 10 shards") from None
    return check_shard((i, n))


def check_shard(shard) -> tuple[int, int] | None:
    """Validate ``shard`` (None or ``(i, n)`` with ``0 <= i < n``)."""
    if shard is None:
        return None
    try:
        i, n = shard
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (i, n))
    except (TypeError, ValueError):
        ok = False
    if not ok or not 0 <= i < n:
        raise ConfigError(f"shard {shard!r} must be (i, n) with integers 0 <= i < n; "
                          f"shards are numbered from 0, e.g. 0/10 .. 9/10")
    return int(i), int(n)


def trial_accuracy(rec: dict) -> float:
    """Top-1 accuracy of one trial record."""
    return rec["correct"] / rec["n_images"]


def cell_trials(config: CampaignConfig, ber: float, recs: dict, start: int | None = None
                ) -> tuple[int, bool]:
    """Replay a cell's stopping rule on its recorded trials.

    Parameters
    ----------
    ber : float
        The cell's BER; at BER 0 no fault can occur, so the cell stops at ``trials``.
    recs : dict
        ``trial index -> record`` for one (group, BER) cell.
    start : int, optional
        A round boundary already known to be reached (saves replaying earlier rounds).

    Returns
    -------
    n : int
        Number of trials the cell runs as far as the records decide (trials ``0..n-1``).
    complete : bool
        True when trials ``0..n-1`` are all recorded and the cell has stopped.
    """
    n = config.trials if start is None else start
    while True:
        if any(t not in recs for t in range(n)):
            return n, False
        if not config.adaptive or n >= config.max_trials or ber == 0.0:
            return n, True
        iv = mean_interval([trial_accuracy(recs[t]) for t in range(n)], config.confidence)
        if iv.half_width <= config.ci_width:
            return n, True
        n = min(n + config.round_size, config.max_trials)


class Planner:
    """Hands out the trials still to run, given the records so far.

    Parameters
    ----------
    config : CampaignConfig
    records : dict
        ``(group, ber, trial) -> record`` already in the store.
    shard : (int, int), optional
        Run only this shard's share.
    """

    def __init__(self, config: CampaignConfig, records: dict, shard=None):
        self.config = config
        self.shard = check_shard(shard)
        cells = config.cells()
        i, n = self.shard if self.shard is not None else (0, 1)
        if config.adaptive:
            self.cells = [c for k, c in enumerate(cells) if k % n == i]
            if n > 1 and not self.cells:
                raise ConfigError(
                    f"shard {i}/{n} gets no work: an adaptive campaign (ci_width) is split "
                    f"by (group, BER) cell and this one has only {len(cells)} cells; use at "
                    f"most {len(cells)} shards, or fixed trials without ci_width")
            self._fixed = None
        else:
            self.cells = cells
            t = config.trials
            self._fixed = {c: frozenset(tr for tr in range(t) if (k * t + tr) % n == i)
                           for k, c in enumerate(cells)}
        self.results = {c: {} for c in self.cells}
        for (g, b, t), rec in records.items():
            if (g, b) in self.results:
                self.results[(g, b)][t] = rec
        self.baseline = records.get(BASELINE)
        self._baseline_issued = False
        self._issued_upto = {}  # cell -> trials below this index have been handed out
        self._target = {}
        self._stopped = set()
        for c in self.cells:
            self._target[c] = config.trials
            self._advance(c)
        # the baseline is trial 0 of the ungrouped BER-0 cell when that cell is run here
        self._baseline_in_cell = (None, 0.0) in self.results and 0 in self._wanted((None, 0.0))
        self._done = sum(sum(1 for t in self.results[c] if t in self._wanted(c))
                         for c in self.cells)
        self._done += self.baseline is not None and not self._baseline_in_cell

    def _wanted(self, c):
        return self._fixed[c] if self._fixed is not None else range(self._target[c])

    def _advance(self, c) -> None:
        """Adaptive cells: open the next round once the current one is complete."""
        if self._fixed is not None or c in self._stopped:
            return
        n, complete = cell_trials(self.config, c[1], self.results[c], start=self._target[c])
        self._target[c] = n
        if complete:
            self._stopped.add(c)

    def _task(self, key):
        g, b, t = key
        return (g, b, t, trial_seed(self.config.seed, b, t, g))

    def take(self) -> list:
        """New tasks ``(group, ber, trial, seed)`` to run now; each is handed out once."""
        out = []
        if self.baseline is None and not self._baseline_in_cell and not self._baseline_issued:
            self._baseline_issued = True
            out.append(self._task(BASELINE))
        for c in self.cells:
            recs = self.results[c]
            start = self._issued_upto.get(c, 0)
            wanted = self._wanted(c)
            stop = self.config.trials if self._fixed is not None else len(wanted)
            for t in range(start, stop):
                if t in wanted and t not in recs:
                    out.append(self._task((c[0], c[1], t)))
            self._issued_upto[c] = stop
        return out

    def add(self, rec: dict) -> None:
        """Register a finished trial's record."""
        key = (rec["group"], rec["ber"], rec["trial"])
        if key == BASELINE:
            self._done += self.baseline is None and not self._baseline_in_cell
            self.baseline = rec
        c = key[:2]
        if c in self.results and key[2] not in self.results[c]:
            self._done += key[2] in self._wanted(c)
            self.results[c][key[2]] = rec
            self._advance(c)

    def planned(self) -> int:
        """Trials currently planned for this run's share, the baseline included."""
        return sum(len(self._wanted(c)) for c in self.cells) + int(not self._baseline_in_cell)

    def done(self) -> int:
        """Planned trials that have a record."""
        return int(self._done)

    def finished(self) -> bool:
        """True when every planned trial has a record and every cell has stopped."""
        return self.done() == self.planned() and (
            self._fixed is not None or len(self._stopped) == len(self.cells))
