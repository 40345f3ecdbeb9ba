"""Training configs: differad's own options as dataclasses (open-r1 style), merged with TRL's
SFT/GRPO configs.

Precedence: built-in defaults < recipe YAML < command-line options. A recipe key must belong to differad's
config or to TRL's config class; anything else is a clear error rather than a silently ignored typo.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from differad_cli.core.errors import BadInput

ALIASES = {"model_name_or_path": "model", "dataset": "pairs", "train_pairs": "pairs"}
THINKS = ("description", "short", "grid", "empty")  # what train-cold's <think> can hold (sft.target_text)


def _h(text: str, *flags: str) -> dict[str, Any]:
    """Field metadata: the help text, and the flags when ``--field-name`` is not all of them."""
    return {"help": text, "flags": flags or None}


@dataclass
class TrainConfig:
    """Options shared by train-cold and train-rl (CLI flags and recipe keys both come from these fields)."""

    pairs: str | None = field(default=None, metadata=_h("Training pairs (pairs.jsonl)."))
    model: str | None = field(default=None, metadata=_h("Model folder: checkpoint or LoRA adapter."))
    family: str | None = field(
        default=None,
        metadata=_h(
            "Family the recipe is written for (qwen2_vl | qwen2_5_vl | qwen3_vl): another is refused."
        ),
    )
    template: str = field(
        default="differad", metadata=_h("Prompt template: differad | baseline | staged | compact.")
    )
    paraphrase: bool = field(
        default=True,
        metadata=_h("Draw a seeded prompt paraphrase per sample.", "--paraphrase/--no-paraphrase"),
    )
    freeze_vision: bool = field(
        default=True,
        metadata=_h("Freeze the vision encoder (paper default).", "--freeze-vision/--train-vision"),
    )
    vision_cache_gb: float = field(
        default=0.0,
        metadata=_h(
            "Host memory (GB) for a frozen vision encoder's per-image features, so an image seen again "
            "(next epoch, GRPO group) is not encoded again; each image is hashed per pass. 0: off."
        ),
    )
    lora: bool = field(default=False, metadata=_h("Train LoRA adapters (PEFT).", "--lora/--no-lora"))
    lora_r: int = field(default=16, metadata=_h("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=_h("LoRA alpha."))
    lora_dropout: float = field(default=0.05, metadata=_h("LoRA dropout."))
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata=_h("Comma-separated module names for LoRA (language model only by default)."),
    )
    merge_lora: bool = field(
        default=False, metadata=_h("Also write a merged model to OUTPUT/merged.", "--merge-lora")
    )
    resume: bool = field(
        default=False, metadata=_h("Resume from the last checkpoint in --output-dir.", "--resume")
    )
    force: bool = field(
        default=False,
        metadata=_h(
            "Write into an --output-dir holding files that are not a differad training run.", "--force"
        ),
    )
    precision: str = field(
        default="auto", metadata=_h("auto (bf16 on a GPU, else fp32) | bf16 | fp16 | fp32.")
    )
    trust_remote_code: bool = field(
        default=False, metadata=_h("Allow model code from the checkpoint.", "--trust-remote-code")
    )
    eval_pairs: str | None = field(default=None, metadata=_h("Held-out pairs for periodic evaluation."))
    eval_steps: int = field(default=0, metadata=_h("Evaluate every N steps (0: at the end)."))
    eval_batch_size: int = field(default=4, metadata=_h("Generation batch size of the evaluation."))
    eval_max_new_tokens: int = field(default=256, metadata=_h("Token budget of the evaluation."))
    num_processes: int = field(default=1, metadata=_h("Processes/GPUs (relaunches via accelerate)."))
    accelerate_config: str | None = field(
        default=None, metadata=_h("accelerate config, e.g. recipes/accelerate/zero3.yaml.")
    )


@dataclass
class ColdConfig(TrainConfig):
    """train-cold: SFT on <think>description</think><answer>box</answer>."""

    use_descriptions: bool = field(
        default=True,
        metadata=_h("Use records' descriptions when present.", "--descriptions/--no-descriptions"),
    )
    think: str = field(
        default="description",
        metadata=_h(
            "What <think> holds: description (the record's or one computed from the images) | short (only "
            "where and how large) | grid (which rows and columns of the model's image-token grid, at most "
            "8x8, differ; the box snapped to them: what the CPU-scale learners localize with) | empty."
        ),
    )


@dataclass
class RLConfig(TrainConfig):
    """train-rl: GRPO with DCLR, group-wise resampling and difficulty-aware weighting."""

    task: str = field(
        default="differad",
        metadata=_h("differad | staged (region -> analysis -> decision, with a continuous decision reward)."),
    )
    rewards: list[str] = field(
        default_factory=lambda: ["format", "dclr"], metadata=_h("Comma-separated reward names.")
    )
    reward_weights: list[float] | None = field(
        default=None, metadata=_h("Comma-separated weights (default all 1).")
    )
    max_resample: int = field(default=2, metadata=_h("Resampling rounds for degenerate groups (0: off)."))
    resample_eps: float = field(default=1e-6, metadata=_h("Group reward std below this is degenerate."))
    difficulty_weighting: bool = field(
        default=True,
        metadata=_h(
            "Scale each group's loss by w (Eq. 12).", "--difficulty-weighting/--no-difficulty-weighting"
        ),
    )
    alpha: float = field(default=0.6, metadata=_h("DCLR centre/scale mix."))
    lam: float = field(default=0.3, metadata=_h("DCLR consistency weight below tau."))
    tau: float = field(default=0.3, metadata=_h("DCLR IoU threshold, also p_miss's."))
    delta: float = field(default=0.0, metadata=_h("DCLR bonus above tau."))


@dataclass
class TrainerOptions:
    """TRL/transformers fields that are also command-line flags (their values go to TRL's config; any other
    TRL field is a recipe key). Defaults: SFT_DEFAULTS / GRPO_DEFAULTS below, then TRL's own."""

    max_steps: int | None = field(default=None, metadata=_h("Stop after N optimizer steps."))
    learning_rate: float | None = field(
        default=None, metadata=_h("Learning rate.", "--lr", "--learning-rate")
    )
    per_device_train_batch_size: int | None = field(
        default=None, metadata=_h("Per-device batch size (rows or completions).", "--batch-size")
    )
    gradient_accumulation_steps: int | None = field(
        default=None, metadata=_h("Gradient accumulation steps.", "--grad-accum")
    )
    num_train_epochs: float | None = field(
        default=None, metadata=_h("Training epochs (when --max-steps is unset).", "--epochs")
    )
    save_steps: int | None = field(default=None, metadata=_h("Checkpoint every N steps."))
    logging_steps: int | None = field(default=None, metadata=_h("Log every N steps."))
    seed: int | None = field(default=None, metadata=_h("Seed for every random choice (default 0)."))
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata=_h("Trade compute for memory.", "--gradient-checkpointing/--no-gradient-checkpointing"),
    )


@dataclass
class GRPOOptions(TrainerOptions):
    """TRL GRPOConfig fields that are also flags of train-rl."""

    num_generations: int | None = field(default=None, metadata=_h("Group size G."))
    temperature: float | None = field(default=None, metadata=_h("Sampling temperature."))
    max_completion_length: int | None = field(default=None, metadata=_h("Max new tokens per completion."))
    beta: float | None = field(default=None, metadata=_h("KL coefficient (0: no reference model)."))


# Defaults that differ from TRL's: the paper's GRPO setup, and small safe SFT settings.
GRPO_DEFAULTS: dict[str, Any] = {
    "seed": 0,  # one default seed across differad's commands (TRL's own is 42)
    "learning_rate": 1e-6,
    "num_generations": 8,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 2,
    "temperature": 0.9,
    "max_completion_length": 256,
    "beta": 0.0,
    "logging_steps": 1,
    "save_steps": 200,
    "report_to": "none",
    "remove_unused_columns": False,
}
SFT_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "learning_rate": 1e-5,
    "per_device_train_batch_size": 4,
    "num_train_epochs": 1.0,
    "max_length": None,  # truncation could cut image tokens
    "logging_steps": 1,
    "save_steps": 200,
    "report_to": "none",
    "remove_unused_columns": False,
    "dataset_kwargs": {"skip_prepare_dataset": True},
}


def load_recipe(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """A recipe YAML as a flat dict (open-r1 style: one mapping of option -> value)."""
    if path is None:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise BadInput(f"recipe not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise BadInput(f"recipe {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"recipe {p} must be a mapping of option: value")
    return {ALIASES.get(str(k), str(k)).replace("-", "_"): v for k, v in data.items()}


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def split_options(
    values: dict[str, Any], ours: type, trl_cls: type, *, source: str = "recipe"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route option names to differad's config or TRL's; unknown names raise BadInput listing them."""
    mine, theirs, unknown = {}, {}, []
    own, trl = field_names(ours), field_names(trl_cls)
    for key, value in values.items():
        if key in own:
            mine[key] = value
        elif key in trl:
            theirs[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise BadInput(
            f"{source}: unknown option(s) {', '.join(sorted(unknown))} "
            f"(not in differad's {ours.__name__} nor TRL's {trl_cls.__name__})"
        )
    return mine, theirs


def _activation_checkpointing(trl_cls: type, values: dict[str, Any]) -> None:
    """transformers >= 5.24 renamed ``gradient_checkpointing*`` to ``activation_checkpointing*`` and warns on
    the old names (TRL still defaults the old one): pass the new names where they exist; older versions (the
    GPU machine's 5.17) keep the old ones. Users and recipes keep saying ``gradient_checkpointing``."""
    fields = {f.name: f for f in dataclasses.fields(trl_cls)}
    for old, new in (
        ("gradient_checkpointing", "activation_checkpointing"),
        ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
    ):
        if new in fields and values.get(new) is None:
            value = values.pop(old, fields[old].default)
            if value is not None and value is not dataclasses.MISSING:
                values[new] = value


def check_numbers(values: dict[str, Any], trl_cls: type) -> None:
    """TRL takes ``learning_rate: "fast"`` or NaN and fails (or trains on NaN) much later: every option whose
    TRL default is a number must be a finite number (a numeric string, as YAML reads 1e-5, is converted)."""
    defaults = {f.name: f.default for f in dataclasses.fields(trl_cls)}
    for key, value in list(values.items()):
        default = defaults.get(key)
        if isinstance(default, bool) or not isinstance(default, (int, float)) or value is None:
            continue
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
                if not isinstance(default, float) and number.is_integer():
                    number = int(number)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise BadInput(f"{key} must be a number, got {value!r}")
        if not math.isfinite(number):
            raise BadInput(f"{key} must be a finite number, got {value}")
        values[key] = number
    if values.get("learning_rate") is not None and values["learning_rate"] <= 0:
        raise BadInput(f"learning_rate must be above 0, got {values['learning_rate']}")


def _check_rewards(cfg: Any) -> None:
    """Reward names first (``--rewards foo --reward-weights 1,1`` is about 'foo', not the count); a recipe's
    ``rewards: format,dclr`` string is a list too."""
    from differad_cli.train.rewards import REWARDS

    if isinstance(cfg.rewards, str):
        cfg.rewards = [r.strip() for r in cfg.rewards.split(",") if r.strip()]
    if not isinstance(cfg.rewards, list) or not cfg.rewards:
        raise BadInput(f"rewards must name at least one reward (choose from: {', '.join(REWARDS)})")
    for name in cfg.rewards:
        if not isinstance(name, str) or name not in REWARDS:
            raise BadInput(f"unknown reward {str(name)!r} (choose from: {', '.join(REWARDS)})")


def build_configs(
    kind: str, *, recipe: str | os.PathLike[str] | None, cli: dict[str, Any], output_dir: str
) -> tuple[TrainConfig, Any]:
    """(differad config, TRL config) for "cold" (SFTConfig) or "rl" (GRPOConfig): defaults < recipe < CLI."""
    import torch

    if kind == "cold":
        from trl import SFTConfig as trl_cls

        ours: type = ColdConfig
        defaults = dict(SFT_DEFAULTS)
    elif kind == "rl":
        from trl import GRPOConfig as trl_cls

        ours = RLConfig
        defaults = dict(GRPO_DEFAULTS)
    else:
        raise ValueError(kind)
    r_mine, r_trl = split_options(load_recipe(recipe), ours, trl_cls, source=f"recipe {recipe}")
    c_mine, c_trl = split_options(
        {k: v for k, v in cli.items() if v is not None}, ours, trl_cls, source="options"
    )
    own_values = {**r_mine, **c_mine}
    try:
        cfg = ours(**own_values)
    except TypeError as e:
        raise BadInput(f"bad option: {e}") from None
    trl_values = {**defaults, **r_trl, **c_trl, "output_dir": output_dir}
    if "output_dir" in r_trl:
        raise BadInput("recipe: 'output_dir' is given on the command line (--output-dir), not in a recipe")
    if cfg.lora and kind == "cold" and "learning_rate" not in r_trl and "learning_rate" not in c_trl:
        trl_values["learning_rate"] = 1e-4
    from differad_cli.core import console

    trl_values.setdefault("disable_tqdm", not console.progress_enabled())
    cuda = torch.cuda.is_available()
    precision = cfg.precision
    if precision not in ("auto", "bf16", "fp16", "fp32"):
        raise BadInput(f"unknown precision '{precision}' (use auto, bf16, fp16 or fp32)")
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    trl_values.setdefault("bf16", precision == "bf16")
    trl_values.setdefault("fp16", precision == "fp16")
    if not cuda:
        trl_values.setdefault("use_cpu", True)
    if not 0 <= cfg.vision_cache_gb < float("inf"):
        raise BadInput(f"vision_cache_gb must be a number >= 0 (0: off), got {cfg.vision_cache_gb}")
    if kind == "cold" and cfg.think not in THINKS:
        raise BadInput(f"unknown think '{cfg.think}' (choose from: {', '.join(THINKS)})")
    if kind == "rl" and cfg.task == "staged":
        cfg.template = "staged" if "template" not in own_values else cfg.template
        if "rewards" not in own_values:
            cfg.rewards = ["staged_format", "staged"]
    if kind == "rl":
        _check_rewards(cfg)
        trl_values["reward_weights"] = cfg.reward_weights
        if cfg.reward_weights is not None and len(cfg.reward_weights) != len(cfg.rewards):
            raise BadInput(f"{len(cfg.reward_weights)} reward weights for {len(cfg.rewards)} rewards")
        if cfg.max_resample < 0:
            raise BadInput("max_resample must be >= 0")
        if cfg.task not in ("differad", "staged"):
            raise BadInput(f"unknown task '{cfg.task}' (use differad or staged)")
    if trl_values.get("use_vllm"):
        mode = trl_values.get("vllm_mode", "colocate")
        if mode not in ("colocate", "server"):
            raise BadInput(f"vllm_mode must be colocate or server, got {mode!r}")
        processes = max(cfg.num_processes, int(os.environ.get("WORLD_SIZE", "1")))
        if kind == "rl" and mode == "server" and cfg.max_resample > 0 and processes > 1:
            # TRL's server client asks for G completions per unique prompt of the gathered rows; regenerating
            # part of the groups from several processes (padded to equal counts) breaks that layout
            raise BadInput(
                "vllm_mode server with resampling needs one training process (TRL's vLLM server client "
                "generates G completions per unique prompt); use --max-resample 0, vllm_mode colocate, "
                "or --num-processes 1"
            )
    check_numbers(trl_values, trl_cls)
    _activation_checkpointing(trl_cls, trl_values)
    try:
        trl_cfg = trl_cls(**trl_values)
    except (TypeError, ValueError) as e:
        raise BadInput(f"invalid training option: {e}") from None
    return cfg, trl_cfg
