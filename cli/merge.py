"""`numharden merge`: combine the stores of sharded sweeps into one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List

import typer

from .common import JsonOpt, emit_json, handle_errors, out
from .sweep import _table


@handle_errors
def merge(sources: Annotated[List[Path], typer.Argument(help="Shard store folders.")],
          output: Annotated[Path, typer.Option("-o", "--output", help="Merged store folder.")] = ...,
          json_: JsonOpt = False) -> None:
    """Merge shard stores of one campaign (refuses stores of different campaigns)."""
    from numharden.campaign import merge_stores
    result = merge_stores([str(s) for s in sources], str(output))
    if json_:
        emit_json(result.to_dict())
    else:
        _table(result, None)
        out.print(f"merged {len(sources)} stores into {output} ({result.n_records} trials, "
                  f"{'complete' if result.complete else 'incomplete'})")
