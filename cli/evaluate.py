"""`numharden eval`: accuracy, loss, per-class accuracy and activation sparsity."""

from __future__ import annotations

from rich.progress import Progress

from numharden.analysis import evaluate

from .common import (BatchOpt, DataOpt, JsonOpt, ModelArg, bold_lead, emit_json, err,
                     handle_errors, load_data_arg, load_model_arg, model_label, out, pct, table)


@handle_errors
def eval_(model: ModelArg = None, data: DataOpt = None, batch_size: BatchOpt = None,
          json_: JsonOpt = False) -> None:
    """Evaluate a model: accuracy, loss, per-class accuracy, activation sparsity per layer."""
    m = load_model_arg(model)
    ds = load_data_arg(data)
    with Progress(console=err, transient=True, disable=json_ or not err.is_terminal) as bar:
        task = bar.add_task("evaluating", total=len(ds.labels))
        r = evaluate(m, ds, batch_size=batch_size,
                     progress=lambda done, total: bar.update(task, completed=done))
    r.pop("predictions")
    r = {"model": model_label(model), "data": ds.name, **r}
    if json_:
        emit_json(r)
        return
    out.print(bold_lead("accuracy ", pct(r['accuracy']), f" ({r['correct']}/{r['n']})  "
                        f"loss {r['loss']:.4f}  non-finite outputs {r['nonfinite']}"))
    t = table("per class", ("class", "name", "images", "accuracy"),
              right=("class", "images", "accuracy"))
    for c in r["per_class"]:
        t.add_row(str(c["class"]), c["name"], str(c["n"]), pct(c["accuracy"]))
    out.print(t)
    t = table("activation sparsity (fraction of zeros)", ("node", "op", "sparsity"),
              right=("sparsity",))
    for name, s in r["sparsity"].items():
        t.add_row(name, s["op"], pct(s["sparsity"]))
    out.print(t)
