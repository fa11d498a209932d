"""The numharden command: one Typer app, one module per command."""

from __future__ import annotations

import typer

from . import export_model, import_model
from . import evaluate, finetune, info, inject, landscape, merge, sweep, train

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure and improve how quantized neural networks survive hardware faults.")
app.command("info")(info.info)
app.command("eval")(evaluate.eval_)
app.command("train")(train.train)
app.command("finetune")(finetune.finetune)
app.command("inject")(inject.inject)
app.command("sweep")(sweep.sweep)
app.command("merge")(merge.merge)
app.command("landscape")(landscape.landscape)
app.command("import")(import_model.import_)
app.command("export")(export_model.export)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
