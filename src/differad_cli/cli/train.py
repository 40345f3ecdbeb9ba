"""`differad train-cold` (SFT cold start) and `differad train-rl` (GRPO + DCLR): thin layers over sft/grpo.

Options left out keep the recipe's value (or the built-in default); options given override the recipe.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from differad_cli.cli._common import Quiet, Verbose, apply_verbosity, example

Pairs = Annotated[
    str | None, typer.Option("--pairs", help="Training pairs (pairs.jsonl).", show_default=False)
]
Model = Annotated[
    str | None, typer.Option("--model", help="Model folder: checkpoint or LoRA adapter.", show_default=False)
]
OutputDir = Annotated[Path, typer.Option("--output-dir", help="Run folder: checkpoints + final model.")]
Recipe = Annotated[Path | None, typer.Option("--recipe", help="Recipe YAML (CLI options override it).")]
MaxSteps = Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps.")]
LR = Annotated[float | None, typer.Option("--lr", "--learning-rate", help="Learning rate.")]
Batch = Annotated[
    int | None, typer.Option("--batch-size", help="Per-device batch size (rows or completions).")
]
Accum = Annotated[int | None, typer.Option("--grad-accum", help="Gradient accumulation steps.")]
Epochs = Annotated[
    float | None, typer.Option("--epochs", help="Training epochs (when --max-steps is unset).")
]
SaveSteps = Annotated[int | None, typer.Option("--save-steps", help="Checkpoint every N steps.")]
LogSteps = Annotated[int | None, typer.Option("--logging-steps", help="Log every N steps.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for every random choice (default 0).")]
Precision = Annotated[str | None, typer.Option("--precision", help="auto | bf16 | fp16 | fp32.")]
GradCkpt = Annotated[
    bool | None,
    typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Trade compute for memory."),
]
Template = Annotated[
    str | None, typer.Option("--template", help="Prompt template: differad | baseline | staged.")
]
Lora = Annotated[bool | None, typer.Option("--lora/--no-lora", help="Train LoRA adapters (PEFT).")]
LoraR = Annotated[int | None, typer.Option("--lora-r", help="LoRA rank.")]
LoraAlpha = Annotated[int | None, typer.Option("--lora-alpha", help="LoRA alpha.")]
LoraDropout = Annotated[float | None, typer.Option("--lora-dropout", help="LoRA dropout.")]
LoraTargets = Annotated[
    str | None, typer.Option("--lora-target-modules", help="Comma-separated module names for LoRA.")
]
MergeLora = Annotated[
    bool | None, typer.Option("--merge-lora", help="Also write a merged model to OUTPUT/merged.")
]
Resume = Annotated[
    bool | None, typer.Option("--resume", help="Resume from the last checkpoint in --output-dir.")
]
FreezeVision = Annotated[
    bool | None, typer.Option("--freeze-vision/--train-vision", help="Freeze the vision encoder (default).")
]
EvalPairs = Annotated[
    str | None, typer.Option("--eval-pairs", help="Held-out pairs for periodic evaluation.")
]
EvalSteps = Annotated[
    int | None, typer.Option("--eval-steps", help="Evaluate every N steps (0: at the end).")
]
Remote = Annotated[
    bool | None, typer.Option("--trust-remote-code", help="Allow model code from the checkpoint.")
]
NProc = Annotated[
    int | None, typer.Option("--num-processes", help="Processes/GPUs (relaunches via accelerate).")
]
AccelCfg = Annotated[
    Path | None,
    typer.Option("--accelerate-config", help="accelerate config, e.g. recipes/accelerate/zero3.yaml."),
]


def _split(value: str | None, cast: Any = str) -> list | None:
    if value is None:
        return None
    from differad_cli.core.errors import BadInput

    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"expected a comma-separated list, got {value!r}") from None


# CLI option name -> config field, where they differ; list-valued options arrive comma-separated.
RENAMED = {
    "lr": "learning_rate",
    "batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "epochs": "num_train_epochs",
    "descriptions": "use_descriptions",
}
LISTS: dict[str, Any] = {"lora_target_modules": str, "rewards": str, "reward_weights": float}
NOT_CONFIG = {"output_dir", "recipe", "num_processes", "accelerate_config", "quiet", "verbose"}


def _options(values: dict[str, Any]) -> dict[str, Any]:
    """The command's parameters as config options (None = not given: the recipe or default applies)."""
    return {
        RENAMED.get(k, k): _split(v, LISTS[k]) if k in LISTS else v
        for k, v in values.items()
        if k not in NOT_CONFIG
    }


def _maybe_relaunch(recipe: Path | None, num_processes: int | None, accelerate_config: Path | None) -> None:
    from differad_cli.train.configs import load_recipe
    from differad_cli.train.launch import relaunch, should_relaunch

    rec = load_recipe(recipe)
    n = num_processes if num_processes is not None else rec.get("num_processes")
    acc = accelerate_config if accelerate_config is not None else rec.get("accelerate_config")
    if should_relaunch(n, acc):
        relaunch(sys.argv[1:], num_processes=n, accelerate_config=acc)


def register(app: typer.Typer) -> None:
    @app.command(
        "train-cold",
        epilog=example(
            "differad train-cold --pairs data/pairs.jsonl --model models/tiny --output-dir runs/cold "
            "--max-steps 20",
            "differad train-cold --recipe recipes/qwen2_5_vl_3b_lora/cold.yaml --pairs data/pairs.jsonl "
            "--output-dir runs/cold",
        ),
    )
    def train_cold_cmd(
        output_dir: OutputDir,
        pairs: Pairs = None,
        model: Model = None,
        recipe: Recipe = None,
        max_steps: MaxSteps = None,
        lr: LR = None,
        batch_size: Batch = None,
        grad_accum: Accum = None,
        epochs: Epochs = None,
        save_steps: SaveSteps = None,
        logging_steps: LogSteps = None,
        seed: SeedOpt = None,
        precision: Precision = None,
        gradient_checkpointing: GradCkpt = None,
        template: Template = None,
        descriptions: Annotated[
            bool | None, typer.Option("--descriptions/--no-descriptions", help="Use records' descriptions.")
        ] = None,
        lora: Lora = None,
        lora_r: LoraR = None,
        lora_alpha: LoraAlpha = None,
        lora_dropout: LoraDropout = None,
        lora_target_modules: LoraTargets = None,
        merge_lora: MergeLora = None,
        resume: Resume = None,
        freeze_vision: FreezeVision = None,
        eval_pairs: EvalPairs = None,
        eval_steps: EvalSteps = None,
        trust_remote_code: Remote = None,
        num_processes: NProc = None,
        accelerate_config: AccelCfg = None,
        quiet: Quiet = False,
        verbose: Verbose = False,
    ) -> None:
        """Cold start: SFT on <think>difference description</think><answer>box</answer> (answer-only loss)."""
        values = dict(locals())
        apply_verbosity(quiet, verbose)
        _maybe_relaunch(recipe, num_processes, accelerate_config)
        from differad_cli.core import console
        from differad_cli.train.sft import train_cold

        options = _options(values)
        result = train_cold(output_dir=output_dir, recipe=recipe, options=options)
        console.info(f"train-cold: done at step {result['global_step']}; model in {output_dir}")

    @app.command(
        "train-rl",
        epilog=example(
            "differad train-rl --pairs data/pairs.jsonl --model runs/cold --output-dir runs/rl "
            "--max-steps 50",
            "differad train-rl --recipe recipes/qwen2_vl_7b_univg/grpo.yaml --pairs data/pairs.jsonl "
            "--output-dir runs/rl --accelerate-config recipes/accelerate/zero3.yaml --num-processes 4",
            "differad train-rl --task staged --pairs data/pairs.jsonl --model runs/cold "
            "--output-dir runs/staged",
        ),
    )
    def train_rl_cmd(
        output_dir: OutputDir,
        pairs: Pairs = None,
        model: Model = None,
        recipe: Recipe = None,
        max_steps: MaxSteps = None,
        lr: LR = None,
        batch_size: Batch = None,
        grad_accum: Accum = None,
        epochs: Epochs = None,
        save_steps: SaveSteps = None,
        logging_steps: LogSteps = None,
        seed: SeedOpt = None,
        precision: Precision = None,
        gradient_checkpointing: GradCkpt = None,
        template: Template = None,
        task: Annotated[
            str | None, typer.Option("--task", help="differad (default) | staged (seed 002).")
        ] = None,
        rewards: Annotated[
            str | None, typer.Option("--rewards", help="Comma-separated reward names (default format,dclr).")
        ] = None,
        reward_weights: Annotated[
            str | None, typer.Option("--reward-weights", help="Comma-separated weights (default all 1).")
        ] = None,
        num_generations: Annotated[
            int | None, typer.Option("--num-generations", help="Group size G.")
        ] = None,
        temperature: Annotated[
            float | None, typer.Option("--temperature", help="Sampling temperature.")
        ] = None,
        max_completion_length: Annotated[
            int | None, typer.Option("--max-completion-length", help="Max new tokens per completion.")
        ] = None,
        beta: Annotated[
            float | None, typer.Option("--beta", help="KL coefficient (0: no reference model).")
        ] = None,
        max_resample: Annotated[
            int | None,
            typer.Option("--max-resample", help="Resampling rounds for degenerate groups (0: off)."),
        ] = None,
        difficulty_weighting: Annotated[
            bool | None,
            typer.Option("--difficulty-weighting/--no-difficulty-weighting", help="Scale group losses by w."),
        ] = None,
        alpha: Annotated[float | None, typer.Option("--alpha", help="DCLR centre/scale mix (0.6).")] = None,
        lam: Annotated[
            float | None, typer.Option("--lam", help="DCLR consistency weight below tau (0.3).")
        ] = None,
        tau: Annotated[
            float | None, typer.Option("--tau", help="DCLR IoU threshold, also p_miss's (0.3).")
        ] = None,
        delta: Annotated[float | None, typer.Option("--delta", help="DCLR bonus above tau.")] = None,
        lora: Lora = None,
        lora_r: LoraR = None,
        lora_alpha: LoraAlpha = None,
        lora_dropout: LoraDropout = None,
        lora_target_modules: LoraTargets = None,
        merge_lora: MergeLora = None,
        resume: Resume = None,
        freeze_vision: FreezeVision = None,
        eval_pairs: EvalPairs = None,
        eval_steps: EvalSteps = None,
        trust_remote_code: Remote = None,
        num_processes: NProc = None,
        accelerate_config: AccelCfg = None,
        quiet: Quiet = False,
        verbose: Verbose = False,
    ) -> None:
        """GRPO with DCLR, group-wise resampling and difficulty-aware weighting (paper III-B2)."""
        values = dict(locals())
        apply_verbosity(quiet, verbose)
        _maybe_relaunch(recipe, num_processes, accelerate_config)
        from differad_cli.core import console
        from differad_cli.train.grpo import train_rl

        options = _options(values)
        result = train_rl(output_dir=output_dir, recipe=recipe, options=options)
        console.info(f"train-rl: done at step {result['global_step']}; model in {output_dir}")
