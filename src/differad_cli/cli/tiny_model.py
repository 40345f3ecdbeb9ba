"""`differad tiny-model`: write the tiny offline Qwen2-VL used by tests, demos and CPU smoke runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from differad_cli.cli.options import Command, Quiet, Verbose, apply_verbosity


def tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to create (must not exist or be empty).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights.")] = 0,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Build a tiny random Qwen2-VL (~0.1M parameters) offline: no download, runs on a CPU."""
    apply_verbosity(quiet, verbose)
    from differad_cli.core import console
    from differad_cli.models.tiny import build_tiny_model

    path = build_tiny_model(out, seed=seed)
    console.info(f"wrote tiny Qwen2-VL to {path}")


COMMANDS = (
    Command(
        "tiny-model",
        tiny_model,
        examples=(
            "differad tiny-model models/tiny",
            "differad train-cold --pairs data/pairs.jsonl "
            "--model models/tiny --output-dir runs/cold --recipe recipes/tiny_cpu/cold.yaml",
        ),
    ),
)
