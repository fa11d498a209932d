"""The numharden command: one Typer app, one module per command."""

from __future__ import annotations

import sys

import typer
import typer.core

from . import export_model, import_model
from . import evaluate, finetune, info, inject, landscape, merge, sweep, train
from .common import one_line_usage_error

# Typer may use Click or its own vendored copy: take the classes from what it raises
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _Group(typer.core.TyperGroup):
    """The command group, with docs/CLI.md's error rule applied to the errors Click and
    Typer raise themselves (bad option values, unknown options, missing arguments): one
    line on stderr starting with ``error:``, exit status 2 -- instead of a Rich box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _ClickException as e:
            sys.stderr.write(one_line_usage_error(e))
            sys.exit(e.exit_code)
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
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
