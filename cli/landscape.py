"""`numharden landscape`: loss surfaces along filter-normalised directions, and sharpness."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.progress import Progress

from numharden.errors import ConfigError

from .common import (DataOpt, JsonOpt, ModelArg, emit_json, err, handle_errors, load_data_arg,
                     load_model_arg, model_label, out, plots_unavailable, table)


@handle_errors
def landscape(
    model: ModelArg = None,
    dims: Annotated[int, typer.Option(min=1, max=2, help="1-D curve or 2-D surface.")] = 1,
    points: Annotated[int, typer.Option(min=2, help="Grid points per axis.")] = 21,
    span: Annotated[float, typer.Option(min=0.0, help="Coefficients in [-span, span].")] = 1.0,
    mode: Annotated[str, typer.Option(help="requant: L(Q(w+ad)); float: L(Q(w)+ad); both.")] = "both",
    images: Annotated[int, typer.Option(min=1, help="Fixed evaluation subset size.")] = 1000,
    split: Annotated[str, typer.Option(help="Evaluate on the 'test' or 'train' split.")] = "test",
    data: DataOpt = None,
    seed: Annotated[int, typer.Option(min=0, help="Direction seed.")] = 0,
    radius: Annotated[float, typer.Option(min=0.0, help="Radius of the sharpness figure.")] = 0.25,
    directions: Annotated[int, typer.Option(min=1, help="Directions for the sharpness figure.")] = 8,
    include_bias_bn: Annotated[bool, typer.Option(help="Also perturb biases and batch norm.")] = False,
    worst_rho: Annotated[float, typer.Option(min=0.0, help=(
        "Radius of the worst-case (SAM/SAQ) sharpness L(Q(w) + rho g/||g||) - L(Q(w)), "
        "reported beside the random-direction figure."))] = 0.05,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder.")] = Path("landscape"),
    json_: JsonOpt = False,
) -> None:
    """Loss landscape (Li et al. 2018) along filter-normalised random directions: data
    (HDF5 and CSV), plots, and two sharpness figures: the mean loss rise at a fixed radius
    along random directions, and the worst-case (gradient-ascent) rise of SAM/SAQ."""
    from numharden.analysis.landscape import MODES, landscape as compute, plot_landscape, sharpness
    from numharden.train import worst_case_sharpness

    modes = list(MODES) if mode == "both" else [mode]
    if any(m not in MODES for m in modes):
        raise ConfigError(f"--mode must be requant, float or both, got {mode!r}")
    m = load_model_arg(model)
    ds = load_data_arg(data, split=split)
    ds = ds.subset(min(images, len(ds)))
    ds.check_for_model(m.num_classes, m.graph.input_shape)
    output.mkdir(parents=True, exist_ok=True)
    summary = {"model": model_label(model), "data": ds.name, "images": len(ds),
               "output": str(output), "modes": {}}
    with Progress(console=err, transient=True, disable=json_ or not err.is_terminal) as bar:
        for md in modes:
            task = bar.add_task(f"{md} surface", total=points ** dims)
            r = compute(m, ds.images, ds.labels, dims=dims, points=points, span=span, mode=md,
                        seed=seed, include_bias_bn=include_bias_bn,
                        progress=lambda d, t, task=task: bar.update(task, completed=d))
            sh = sharpness(m, ds.images, ds.labels, radius=radius, directions=directions,
                           mode=md, seed=seed + 1, include_bias_bn=include_bias_bn)
            stem = output / f"landscape-{dims}d-{md}"
            _write(r, stem)
            try:
                plots = plot_landscape(r, stem)
            except ConfigError:
                plots = []
                if not json_:
                    plots_unavailable()
            summary["modes"][md] = {"sharpness": sh, "center_loss": r["center_loss"],
                                    "center_accuracy": r["center_accuracy"],
                                    "files": [f"{stem}.h5", f"{stem}.csv", *plots]}
    summary["worst_case"] = worst_case_sharpness(m, ds.images, ds.labels, rho=worst_rho,
                                                 perturb_bias=include_bias_bn)
    if json_:
        emit_json(summary)
        return
    t = table(f"sharpness: mean loss rise at radius {radius} over {directions} directions "
              f"x 2 signs", ("surface", "loss", "acc %", "rise", "± s.e."),
              right=("loss", "acc %", "rise", "± s.e."))
    for md, s in summary["modes"].items():
        label = "L(Q(w+ad))" if md == "requant" else "L(Q(w)+ad)"
        t.add_row(label, f"{s['center_loss']:.4f}", f"{100 * s['center_accuracy']:.2f}",
                  f"{s['sharpness']['rise']:.4f}", f"{s['sharpness']['rise_sem']:.4f}")
    out.print(t)
    wc = summary["worst_case"]
    out.print(f"worst-case sharpness L(Q(w) + rho g/||g||) - L(Q(w)) at rho {worst_rho:g}: "
              f"{wc['rise']:.4f} (||g|| {wc['grad_norm']:.4g})")
    out.print(f"data and plots in {output}/")


def _write(r: dict, stem: Path) -> None:
    import h5py
    with h5py.File(f"{stem}.h5", "w") as f:
        for k in ("alphas", "betas", "loss", "accuracy"):
            if k in r:
                f[k] = r[k]
        for k in ("dims", "mode", "seed", "span", "points", "center_loss", "center_accuracy", "images"):
            f.attrs[k] = r[k]
    with open(f"{stem}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        if r["dims"] == 1:
            w.writerow(["alpha", "loss", "accuracy"])
            w.writerows(zip(r["alphas"], r["loss"], r["accuracy"]))
        else:
            w.writerow(["alpha", "beta", "loss", "accuracy"])
            for i, a in enumerate(r["alphas"]):
                for j, b in enumerate(r["betas"]):
                    w.writerow([a, b, r["loss"][i, j], r["accuracy"][i, j]])
