"""`differad train-cold` (SFT cold start) and `differad train-rl` (GRPO + DCLR): thin layers over the train
stage. Their flags come from ``ColdConfig``/``RLConfig`` and the TRL fields in ``TrainerOptions``/
``GRPOOptions``; options left out keep the recipe's value (or the built-in default)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from differad_cli.cli.options import Command, config_options
from differad_cli.train.configs import ColdConfig, GRPOOptions, RLConfig, TrainerOptions

OutputDir = Annotated[Path, typer.Option("--output-dir", help="Run folder: checkpoints + final model.")]
Recipe = Annotated[Path | None, typer.Option("--recipe", help="Recipe YAML (CLI options override it).")]


def _maybe_relaunch(kind: str, output_dir: Path, recipe: Path | None, options: dict[str, Any]) -> None:
    """Several processes (or an accelerate config) asked for: check every input here, once, then relaunch;
    bad input is one line before any worker starts."""
    from differad_cli.train.launch import launch_request, relaunch

    request = launch_request(recipe, options)
    if request is None:
        return
    from differad_cli.train.common import check_inputs

    check_inputs(kind, output_dir=output_dir, recipe=recipe, options=options)
    n, acc, why = request
    relaunch(sys.argv[1:], num_processes=n, accelerate_config=acc, why=why)


def _train(kind: str, output_dir: Path, recipe: Path | None, options: dict[str, Any]) -> None:
    _maybe_relaunch(kind, output_dir, recipe, options)
    from differad_cli.core import console

    if kind == "cold":
        from differad_cli.train.sft import train_cold as entry
    else:
        from differad_cli.train.grpo import train_rl as entry
    result = entry(output_dir=output_dir, recipe=recipe, options=options)
    console.info(f"train-{kind}: done at step {result['global_step']}; model in {output_dir}")


@config_options(ColdConfig, TrainerOptions, unset=True)
def train_cold_cmd(options: dict[str, Any], output_dir: OutputDir, recipe: Recipe = None) -> None:
    """Cold start: SFT on <think>difference description</think><answer>box</answer> (answer-only loss)."""
    _train("cold", output_dir, recipe, options)


@config_options(RLConfig, GRPOOptions, unset=True)
def train_rl_cmd(options: dict[str, Any], output_dir: OutputDir, recipe: Recipe = None) -> None:
    """GRPO with DCLR, group-wise resampling and difficulty-aware weighting (paper III-B2)."""
    _train("rl", output_dir, recipe, options)


COMMANDS = (
    Command(
        "train-cold",
        train_cold_cmd,
        examples=(
            "differad train-cold --pairs data/pairs.jsonl --model models/tiny --output-dir runs/cold "
            "--max-steps 20",
            "differad train-cold --recipe recipes/qwen2_5_vl_3b_lora/cold.yaml --pairs data/pairs.jsonl "
            "--output-dir runs/cold",
        ),
    ),
    Command(
        "train-rl",
        train_rl_cmd,
        examples=(
            "differad train-rl --pairs data/pairs.jsonl --model runs/cold --output-dir runs/rl "
            "--max-steps 50",
            "differad train-rl --recipe recipes/qwen2_vl_7b_univg/grpo.yaml --pairs data/pairs.jsonl "
            "--output-dir runs/rl --accelerate-config recipes/accelerate/zero3.yaml --num-processes 4",
            "differad train-rl --task staged --pairs data/pairs.jsonl --model runs/cold "
            "--output-dir runs/staged",
        ),
    ),
)
