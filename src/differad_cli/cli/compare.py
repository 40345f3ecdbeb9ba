"""`differad compare`: a thin layer over :func:`differad_cli.eval.compare.compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from differad_cli.cli.options import Command, config_options
from differad_cli.eval.compare import CompareConfig


@config_options(CompareConfig)
def compare_cmd(
    cfg: CompareConfig,
    runs: Annotated[
        list[Path], typer.Argument(help="Eval folders (or their metrics.json files).", metavar="RUN")
    ],
) -> None:
    """Compare eval runs side by side: one row per run, the metrics as columns, the best per column marked
    (terminal table, --md, --csv or --json). Runs scored on different pairs are refused."""
    from differad_cli.eval.compare import compare

    print(compare(runs, cfg), end="")


COMMANDS = (
    Command(
        "compare",
        compare_cmd,
        examples=(
            "differad compare runs/eval-diff runs/eval-rl",
            "differad compare runs/eval-* --by category --md",
            "differad compare demo/eval/diff demo/eval/tiny-rl --name diff,tiny --csv",
        ),
    ),
)
