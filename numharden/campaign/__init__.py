"""Monte-Carlo fault campaigns: statistics, crash-safe resumable store, Dask and shards.

A campaign answers "how accurate is this network when its memory has bit-error rate
BER?" with a confidence interval. It runs *trials* -- one random draw of faults, one
pass over the test set, undo -- at each BER (and, for breakdowns, each group such as a
layer or a bit position), records every finished trial crash-safely and summarises.

Trial-runner protocol
---------------------
The machinery never sees a model. It is given a **spec**, a small picklable object::

    class MySpec:
        def describe(self) -> dict: ...      # JSON-serialisable: everything that
                                             # determines results except the weights
                                             # (model path, data set, images, fault model)
        def model_checksum(self) -> str: ... # e.g. SHA-256 of the stored tensors
        def build(self): ...                 # -> runner; loads model and data (expensive)

``build()`` runs once per worker process (never per trial) and returns a **runner**,
a callable::

    runner(ber, trial, seed) -> dict                 # ungrouped campaign
    runner(ber, trial, seed, group=group) -> dict    # breakdown campaign

``seed`` is a 128-bit int from :func:`~numharden.campaign.seeds.trial_seed`; the runner
must draw all its randomness from ``numpy.random.default_rng(seed)`` so a trial's result
depends only on (spec, model, ber, trial, seed, group). The dict holds int counts:

``correct``    images whose top-1 prediction equals the label
``sdc``        images whose top-1 differs from the fault-free prediction
``nonfinite``  images with a NaN or Inf among the outputs
``n_faults``   faults (bit flips) injected
``n_masked``   injected faults the runner knows had no effect (e.g. flips that leave
               the stored value unchanged); reported as mean_masked
``n_images``   images evaluated

Extra JSON-serialisable keys are stored with the record. ``runner(0.0, 0, seed)`` (BER 0,
no group) must be the fault-free evaluation: every campaign runs it once as the
*baseline* for accuracy drops, and the machinery checks it reports no fault and no SDC.
The engine trial (inject faults into the model's stored tensors, run the test set,
undo) plugs in as such a spec; :class:`~numharden.campaign.synthetic.SyntheticSpec` is
a model-free spec with a known distribution used by the tests.

Library API
-----------
``CampaignConfig(bers, trials=100, seed=0, ci_width=None, max_trials=None,
round_size=None, groups=None, confidence=0.95)``
    What to run; ``ci_width`` + ``max_trials`` make it adaptive (``--ci-width``,
    ``--max-trials``).
``run_campaign(spec, config, out, *, workers=None, scheduler=None, client=None,
shard=None, chunk_size=None, progress=None) -> CampaignResult``
    Run or resume into the store directory ``out`` (``--out``): serially, on
    ``workers`` local processes (``--workers``), on a Dask cluster (``--scheduler``
    address or a ``client``), or only shard ``(i, n)`` (``--shard i/n``, parsed by
    :func:`parse_shard`). Per-trial results are identical on every backend.
``merge_stores(sources, out) -> CampaignResult``
    ``numharden merge``: combine shard stores, refusing mismatched campaigns.
``summarize(out) -> CampaignResult``
    Read a store without running anything.
``CampaignResult.rows`` / ``.to_dict()``
    Per-(group, BER) :class:`CellSummary` rows: ``ber, trials, mean_acc, ci_lo, ci_hi,
    acc_drop (+ CI), sdc_rate (+ CI), nonfinite_rate (+ CI), mean_faults,
    mean_masked``; JSON-ready.
``rank_groups(result, ber=None)``
    Breakdown groups from most to least vulnerable.
``plot_sweep(result, path_stem)``
    Accuracy vs BER (log x) with the confidence band, as PNG and SVG.
Statistics helpers (:mod:`.stats`): ``mean_interval``, ``t_ppf``, ``wilson``,
``clopper_pearson``, ``betainc``, ``betaincinv``.

Modules: :mod:`.seeds` (per-trial seeds), :mod:`.stats` (intervals), :mod:`.spec`
(config, protocol checks), :mod:`.plan` (which trials; adaptive rounds; shards),
:mod:`.store` (on-disk format and crash safety), :mod:`.backends` (serial, processes,
Dask), :mod:`.run` (run, resume, merge), :mod:`.result` (summaries, ranking),
:mod:`.plot`, :mod:`.synthetic`. Cluster recipes: ``docs/CLUSTER.md``.
"""

from .plan import BASELINE, parse_shard
from .plot import plot_sweep
from .result import CampaignResult, CellSummary, rank_groups, summarize
from .run import Progress, merge_stores, run_campaign
from .seeds import trial_seed
from .spec import RESULT_FIELDS, CampaignConfig
from .stats import clopper_pearson, mean_interval, t_ppf, wilson
from .store import CampaignStore
from .synthetic import SyntheticSpec

__all__ = ["BASELINE", "CampaignConfig", "CampaignResult", "CampaignStore", "CellSummary",
           "Progress", "RESULT_FIELDS", "SyntheticSpec", "clopper_pearson", "mean_interval",
           "merge_stores", "parse_shard", "plot_sweep", "rank_groups", "run_campaign",
           "summarize", "t_ppf", "trial_seed", "wilson"]
