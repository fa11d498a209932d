"""Crossbar variation options shared by commands (`inject --variation ...`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

VariationOpt = Annotated[Optional[str], typer.Option(
    "--variation", help="Crossbar programming variation: gaussian, lognormal, additive "
                        "(docs/CROSSBAR.md).")]
PcmOpt = Annotated[bool, typer.Option("--pcm", help="IBM aihwkit's PCM statistical model.")]
SigmaOpt = Annotated[Optional[float], typer.Option(
    "--sigma", min=0.0, help="Programming sigma (PCM: noise scale, default 1).")]
MappingOpt = Annotated[str, typer.Option(help="differential or offset.")]
GMinOpt = Annotated[float, typer.Option(min=0.0, help="g_min (uS).")]
GMaxOpt = Annotated[float, typer.Option(min=0.0, help="g_max (uS).")]
CellBitsOpt = Annotated[Optional[int], typer.Option(
    min=1, max=8, help="Bit-slice codes over cells of B bits (default: one analog cell).")]
ScalingOpt = Annotated[str, typer.Option(help="layer or column (analog cells).")]
DriftTimeOpt = Annotated[float, typer.Option(min=0.0, help="Seconds since programming.")]
DriftNuOpt = Annotated[Optional[float], typer.Option(help="Drift exponent (non-PCM).")]
DriftNuStdOpt = Annotated[float, typer.Option(min=0.0, help="Spread of the drift exponent.")]
DriftCompOpt = Annotated[bool, typer.Option(help="Global drift compensation.")]
ReadNoiseOpt = Annotated[Optional[float], typer.Option(
    min=0.0, help="Read noise (relative sigma; PCM: 1/f scale, default 1).")]
StuckOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="Per-cell probability.")]


def variation_spec(variation, pcm, sigma, mapping, g_min, g_max, cell_bits, scaling,
                   drift_time, drift_nu, drift_nu_std, drift_compensation, read_noise,
                   stuck_on, stuck_off):
    """A VariationSpec from the options, or None when no crossbar option was given."""
    from numharden.crossbar import VariationSpec
    from numharden.errors import ConfigError

    if variation is not None and pcm:
        raise ConfigError("give either --variation MODEL or --pcm, not both")
    programming = "pcm" if pcm else (variation or "none")
    if programming == "none" and not (stuck_on or stuck_off or drift_nu is not None
                                      or read_noise or cell_bits):
        if sigma is not None:
            raise ConfigError("--sigma needs --variation gaussian|lognormal|additive or --pcm")
        VariationSpec(mapping=mapping, g_min=g_min, g_max=g_max, scaling=scaling)  # validate
        unused = [f"--{k.replace('_', '-')}" for k, v, d in (
            ("mapping", mapping, "differential"), ("g_min", g_min, 0.0), ("g_max", g_max, 25.0),
            ("scaling", scaling, "layer"), ("drift_time", drift_time, 0.0),
            ("drift_nu_std", drift_nu_std, 0.0),
            ("drift_compensation", drift_compensation, False)) if v != d]
        if unused:
            raise ConfigError(f"{', '.join(unused)} only apply to crossbar variation; add "
                              f"--variation gaussian|lognormal|additive, --pcm, --stuck-on/"
                              f"--stuck-off, --read-noise or --cell-bits, or leave them out")
        return None
    if sigma is None:
        sigma = 1.0 if pcm else 0.0
    return VariationSpec(programming=programming, sigma=sigma, mapping=mapping, g_min=g_min,
                         g_max=g_max, cell_bits=cell_bits, scaling=scaling,
                         drift_time=drift_time, drift_nu=drift_nu, drift_nu_std=drift_nu_std,
                         drift_compensation=drift_compensation, read_noise=read_noise,
                         stuck_on=stuck_on, stuck_off=stuck_off)
