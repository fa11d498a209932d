"""Accuracy-vs-BER plot of a campaign (PNG and SVG), matplotlib imported lazily.

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly, so it never touches
pyplot's global state or the user's interactive backend.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .result import CampaignResult

__all__ = ["plot_sweep"]


def plot_sweep(result: CampaignResult, path_stem, *, title: str | None = None) -> list:
    """Plot mean accuracy vs bit-error rate with its confidence band.

    One curve per breakdown group (or a single curve). The x axis is logarithmic, so
    rows at BER 0 are not drawn as points; the fault-free accuracy is a dashed line.

    Parameters
    ----------
    result : CampaignResult
    path_stem : str or Path
        Output path without suffix; ``<stem>.png`` and ``<stem>.svg`` are written.
    title : str, optional
        Figure title (default: the campaign key).

    Returns
    -------
    list of Path
        The two files written.

    Raises
    ------
    ConfigError
        matplotlib is not installed, or the result has no row at a BER > 0.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'numharden[plot]', or "
                          "leave out the plot option") from None
    if not any(r.ber > 0 for r in result.rows):
        raise ConfigError(f"campaign {result.store} has no summarised BER > 0 to plot on a "
                          f"log axis; run the campaign (or add rates > 0) first")
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    level = round(100 * result.config.confidence)
    for g in result.groups():
        rows = sorted((r for r in result.rows_for(g) if r.ber > 0), key=lambda r: r.ber)
        if not rows:
            continue
        x = [r.ber for r in rows]
        label = "accuracy" if g is None else str(g)
        (line,) = ax.plot(x, [100 * r.mean_acc for r in rows], marker="o", ms=3,
                          label=f"{label} (mean, {level}% CI)")
        ax.fill_between(x, [100 * r.ci_lo for r in rows], [100 * r.ci_hi for r in rows],
                        color=line.get_color(), alpha=0.2, linewidth=0)
    if result.baseline_acc is not None:
        ax.axhline(100 * result.baseline_acc, color="0.3", ls="--", lw=1,
                   label=f"fault-free {100 * result.baseline_acc:.2f}%")
    from .spec import QUANTITY_LABELS
    label, unit, scale = QUANTITY_LABELS[result.config.quantity]
    ax.set_xscale(scale)
    ax.set_xlabel(label + (f" ({unit})" if unit else ""))
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title if title is not None else f"campaign {result.campaign_key}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
