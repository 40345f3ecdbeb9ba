"""`differad tiny-model`: a small random Qwen-VL (any family) for tests, demos and CPU smoke runs, or a random
one of the family's real size for benchmarks (`--preset real`); options from ``TinyModelOptions``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from differad_cli.cli.options import Command, config_options
from differad_cli.models.tiny import TinyModelOptions


@config_options(TinyModelOptions)
def tiny_model(
    opts: TinyModelOptions,
    out: Annotated[
        Path, typer.Argument(help="Folder to create (must not exist or be empty).", metavar="OUT")
    ],
) -> None:
    """Build a random Qwen-VL of the chosen family offline: no download; the tiny preset runs on a CPU."""
    from differad_cli.core import console
    from differad_cli.models.tiny import build_tiny_model

    path = build_tiny_model(
        out, seed=opts.seed, family=opts.family, preset_name=opts.preset, dtype=opts.dtype, device=opts.device
    )
    console.info(f"wrote {opts.preset} {opts.family} to {path}")


COMMANDS = (
    Command(
        "tiny-model",
        tiny_model,
        examples=(
            "differad tiny-model models/tiny",
            "differad tiny-model models/tiny-qwen3 --family qwen3_vl",
            "differad tiny-model models/qwen2_5_vl-3b-random --family qwen2_5_vl --preset real --device cuda",
            "differad train-cold --pairs data/pairs.jsonl "
            "--model models/tiny --output-dir runs/cold --recipe recipes/tiny_cpu/cold.yaml",
        ),
    ),
)
