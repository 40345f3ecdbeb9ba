"""`differad tiny-model`: write a small random Qwen-VL (any family) used by tests, demos and CPU smoke runs,
or a random one of the family's real size for benchmarks (`--preset real`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from differad_cli.commands._common import Quiet, Seed, Verbose, apply_verbosity, example


def register(app: typer.Typer) -> None:
    @app.command(
        "tiny-model",
        epilog=example(
            "differad tiny-model models/tiny",
            "differad tiny-model models/tiny-qwen3 --family qwen3_vl",
            "differad tiny-model models/qwen2_5_vl-3b-random --family qwen2_5_vl --preset real --device cuda",
            "differad train-cold --pairs data/pairs.jsonl "
            "--model models/tiny --output-dir runs/cold --recipe recipes/tiny_cpu/cold.yaml",
        ),
    )
    def tiny_model(
        out: Annotated[Path, typer.Argument(help="Folder to create (must not exist or be empty).")],
        family: Annotated[
            str, typer.Option("--family", help="qwen2_vl | qwen2_5_vl | qwen3_vl (architecture + processor).")
        ] = "qwen2_vl",
        preset: Annotated[
            str,
            typer.Option(
                "--preset",
                help="tiny (~0.1M parameters, CPU seconds) | real (the family's smallest published "
                "architecture: Qwen2-VL-2B, Qwen2.5-VL-3B, Qwen3-VL-2B; random weights).",
            ),
        ] = "tiny",
        dtype: Annotated[
            str | None,
            typer.Option("--dtype", help="fp32 | bf16: saved weights (default: fp32 tiny, bf16 real)."),
        ] = None,
        device: Annotated[
            str, typer.Option("--device", help="cpu | cuda: where the random initialization runs.")
        ] = "cpu",
        seed: Seed = 0,
        quiet: Quiet = False,
        verbose: Verbose = False,
    ) -> None:
        """Build a random Qwen-VL of the chosen family offline: no download; the tiny preset runs on a CPU."""
        apply_verbosity(quiet, verbose)
        from differad_cli import console
        from differad_cli.tiny_model import build_tiny_model

        path = build_tiny_model(out, seed=seed, family=family, preset_name=preset, dtype=dtype, device=device)
        console.info(f"wrote {preset} {family} to {path}")
