"""Settings of `differad demo`: its options and the training settings it carries (recipes/demo_cpu/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEARNER_PRESETS = ("demo", "learner")  # what --preset may name


# The settings of recipes/demo_cpu/ (tests/test_demo.py checks they agree; the recipes are not part of an
# installed package, so the demo carries its own copy). The 8x8 learner of recipes/learner_cpu/ names the
# differing rows only after ~8,000 samples (~7 minutes here); the demo's learner sees 16 image tokens per
# image and the compact prompt (a step ~2.5x cheaper) and starts on blank pairs (black, white defects:
# where to look, without comparing), then the easy generator's textured pairs: it localizes after ~600
# steps in all (docs/learning.md).
COLD_OPTIONS: dict[str, Any] = {
    "template": "compact",
    "think": "grid",
    "paraphrase": False,
    "learning_rate": 5e-4,
    "lr_scheduler_type": "constant_with_warmup",
    "warmup_steps": 50,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "save_steps": 100,
    "logging_steps": 25,
    "precision": "fp32",
    "gradient_checkpointing": False,
}
RL_OPTIONS: dict[str, Any] = {
    "template": "compact",
    "paraphrase": False,
    "rewards": ["format", "dclr"],
    "learning_rate": 1e-4,
    "num_generations": 8,
    "per_device_train_batch_size": 16,
    "gradient_accumulation_steps": 1,
    "temperature": 0.9,
    "max_completion_length": 48,
    "vision_cache_gb": 1.0,
    "save_steps": 5,
    "logging_steps": 1,
    "precision": "fp32",
    "gradient_checkpointing": False,
}


@dataclass
class DemoConfig:
    out: Path = field(default=Path("demo"), metadata={"help": "Folder for everything the demo writes."})
    n_blank: int = field(
        default=600, metadata={"help": "Blank training pairs (black, white defects): the first stage's."}
    )
    n_train: int = field(default=1000, metadata={"help": "Synthetic training pairs (the easy generator)."})
    n_test: int = field(default=48, metadata={"help": "Synthetic held-out pairs (another seed)."})
    size: int = field(default=224, metadata={"help": "Synthetic image size (pixels, square)."})
    blank_steps: int = field(
        default=300, metadata={"help": "train-cold optimizer steps on the blank pairs (0: no first stage)."}
    )
    cold_steps: int = field(
        default=400, metadata={"help": "train-cold optimizer steps on the training pairs."}
    )
    rl_steps: int = field(default=5, metadata={"help": "train-rl optimizer steps."})
    preset: str = field(
        default="demo",
        metadata={
            "help": "The learner's size: demo (16 image tokens per image) | learner (64, the benchmark's)."
        },
    )
    template: str = field(
        default="compact", metadata={"help": "Prompt of training and evaluation: compact | differad | ..."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})
    family: str = field(
        default="qwen3_vl",
        metadata={
            "help": "The learner's family: qwen2_vl | qwen2_5_vl | qwen3_vl (measured by bench_learning)."
        },
    )


@dataclass
class DemoResult:
    paths: dict[str, Path]
    metrics: dict[str, dict[str, Any]]
    timings: dict[str, float]
    preset: str = "demo"  # the learner's (what describe says about the numbers)
