"""Plumbing shared by train-cold and train-rl: input checks, datasets, model setup, resume, saving, eval.

Everything the user can get wrong (records, files, model path, family, recipe keys) is checked before any
model is loaded, so a bad run fails in seconds with one line instead of after minutes of loading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.errors import BadInput
from differad_cli.core.records import Pair, check_files, read_pairs
from differad_cli.train.callbacks import make_eval_callback, quiet_resume, route_logs
from differad_cli.train.launch import ENV_GUARD
from differad_cli.train.model import (
    cache_vision,
    full_checkpoint,
    load_trainable,
    lora_config,
    save_final,
)

MAX_SHOWN = 5


@dataclass
class Setup:
    """Everything a training command has checked before any model loads, then the loaded model."""

    cfg: Any
    args: Any
    pairs: list[Pair]
    eval_pairs: list[Pair] | None
    model_path: Path
    family: str
    checkpoint: str | None
    model: Any = None
    processor: Any = None
    callbacks: list[Any] = field(default_factory=list)  # periodic evaluation, when --eval-pairs is given

    @property
    def peft_config(self) -> Any:
        return lora_config(self.cfg) if self.cfg.lora and not hasattr(self.model, "peft_config") else None


def check_inputs(
    kind: str,
    *,
    output_dir: str | os.PathLike[str],
    recipe: str | os.PathLike[str] | None,
    options: dict[str, Any] | None,
    check: Callable[[Any], None] | None = None,
) -> Setup:
    """Configs (defaults < recipe < options) and every input check (``check`` adds the command's own), no
    model: what a multi-process launch runs once, in the user's process, before it relaunches."""
    from differad_cli.models.load import quiet_accelerator_probe
    from differad_cli.train.configs import build_configs

    quiet_accelerator_probe()
    cfg, args = build_configs(kind, recipe=recipe, cli=dict(options or {}), output_dir=str(output_dir))
    check_template(cfg.template)
    if check is not None:
        check(cfg)
    pairs = validate_pairs(cfg.pairs)
    eval_pairs = validate_pairs(cfg.eval_pairs, what="--eval-pairs") if cfg.eval_pairs else None
    model_path, family = check_model_path(cfg.model)
    check_recipe_family(cfg, recipe, model_path, family)
    if kind == "rl":
        check_prompt_wording(cfg, model_path)
    checkpoint = resume_checkpoint(output_dir, cfg.resume)
    check_output_dir(output_dir, force=cfg.force or cfg.resume)
    return Setup(cfg, args, pairs, eval_pairs, model_path, family, checkpoint)


def setup(
    kind: str,
    *,
    output_dir: str | os.PathLike[str],
    recipe: str | os.PathLike[str] | None,
    options: dict[str, Any] | None,
    check: Callable[[Any], None] | None = None,
) -> Setup:
    """Every input check (:func:`check_inputs`), then the model: a bad run fails in seconds with one line
    instead of after minutes of loading."""
    run = check_inputs(kind, output_dir=output_dir, recipe=recipe, options=options, check=check)
    run.model, run.processor = load_trainable(run.model_path, run.cfg, run.args, run.checkpoint)
    if run.eval_pairs:
        run.callbacks = [make_eval_callback(run.eval_pairs, run.cfg, run.family, output_dir)]
    return run


def train_and_save(trainer: Any, run: Setup, output_dir: str | os.PathLike[str], banner: str) -> dict:
    """The common tail of both commands: wire callbacks and logs, train (resuming), save, summarize."""
    for cb in run.callbacks:
        cb.trainer = trainer
    route_logs(trainer, output_dir, run.checkpoint)
    cache_vision(trainer, run.cfg)
    console.info(banner)
    quiet_resume(trainer, run.checkpoint, weights_loaded=full_checkpoint(run.checkpoint) is not None)
    trainer.train(resume_from_checkpoint=run.checkpoint)
    save_final(trainer, run.processor, run.cfg, output_dir)
    prompt = {"template": run.cfg.template, "paraphrase": run.cfg.paraphrase}
    start = str(Path(run.model_path).resolve())
    extra = {"family": run.family, "model": start, "pairs": len(run.pairs), "prompt": prompt}
    return summary(trainer, output_dir, extra)  # model: where training started (a curriculum's chain)


def check_prompt_wording(cfg: Any, model_path: Path) -> None:
    """Warn when train-rl draws prompt wordings its starting checkpoint never saw: a model cold-started on the
    canonical prompt alone (``paraphrase: false``, as the CPU learner is) answers paraphrases with garbage,
    so every group is degenerate or format-failing and RL learns nothing (docs/learning.md)."""
    if os.environ.get(ENV_GUARD) == "1" or os.environ.get("LOCAL_RANK", "0") != "0":
        return  # workers differad relaunched (the user's process said it already), and ranks other than 0
    from differad_cli.models.load import trained_prompt

    seen = trained_prompt(model_path)
    if seen is None:
        return  # not a differad run (or an older one): nothing recorded to compare with
    from differad_cli.protocol.prompts import paraphrases

    if seen.get("paraphrase") is False and cfg.paraphrase and len(paraphrases(cfg.template)) > 1:
        console.warn(
            f"{model_path.name} was trained on the canonical prompt only (paraphrase: false) and this run "
            "draws paraphrases it never saw; pass --no-paraphrase to keep its wording"
        )
    if seen.get("template") not in (None, cfg.template):
        console.warn(
            f"{model_path.name} was trained with template '{seen['template']}', this run uses "
            f"'{cfg.template}'"
        )


def validate_pairs(path: str | os.PathLike[str] | None, *, what: str = "--pairs") -> list[Pair]:
    """Read and check every record and the files it points to; all problems in one report (exit 2)."""
    if path is None:
        raise BadInput(f"{what} is required (a pairs.jsonl manifest)")
    pairs = read_pairs(path)
    problems = check_files(pairs, open_images=True)
    if problems:
        shown = "; ".join(problems[:MAX_SHOWN])
        more = f" (and {len(problems) - MAX_SHOWN} more)" if len(problems) > MAX_SHOWN else ""
        raise BadInput(f"{len(problems)} file problem(s) in {len(pairs)} record(s) of {path}: {shown}{more}")
    return pairs


def check_model_path(path: str | None) -> tuple[Path, str]:
    """(absolute model folder, coordinate family); missing folder or unknown family -> BadInput."""
    from differad_cli.models.load import model_family

    if not path:
        raise BadInput(
            "--model is required (a model folder; `differad tiny-model DIR` builds an offline one)"
        )
    p = Path(path).resolve()
    return p, model_family(p)


def check_recipe_family(
    cfg: Any, recipe: str | os.PathLike[str] | None, model_path: Path, family: str
) -> None:
    """A recipe written for one family refuses another family's checkpoint: its learning rate, LoRA targets
    and batch sizes were chosen for that model. The recipe's ``family`` key decides; without one, the family
    its own ``model`` path spells out (e.g. /models/Qwen2.5-VL-3B-Instruct), if any."""
    from differad_cli.core.coords import check_family, family_from_name
    from differad_cli.train.configs import load_recipe

    if cfg.family is not None:
        expected, why = check_family(cfg.family), f"family: {cfg.family}"
    else:
        named = load_recipe(recipe).get("model") if recipe is not None else None
        expected, why = (family_from_name(named), f"model: {named}") if isinstance(named, str) else (None, "")
    if expected is not None and expected != family:
        raise BadInput(
            f"recipe {recipe} is written for {expected} ({why}) but {model_path} is a {family} checkpoint; "
            f"use a {family} recipe (recipes/README.md) or recipes/tiny_cpu for the tiny models"
        )


def check_template(name: str) -> str:
    from differad_cli.protocol.prompts import TEMPLATES

    if name not in TEMPLATES:
        raise BadInput(f"unknown template '{name}' (choose from: {', '.join(TEMPLATES)})")
    return name


RUN_FILES = ("train_log.jsonl", "train_summary.json", "trainer_state.json")


def is_run_folder(path: Path) -> bool:
    """A training run folder of ours: a checkpoint, or a log/summary/trainer state a run writes."""
    return any((path / name).is_file() for name in RUN_FILES) or any(
        p.is_dir() for p in path.glob("checkpoint-*")
    )


def check_output_dir(output_dir: str | os.PathLike[str], *, force: bool) -> None:
    """The ownership rule of every output (core.io.check_out_dir): a non-empty --output-dir that is not a
    training run of ours is refused unless --force (or --resume); it must be writable."""
    from differad_cli.core.io import check_out_dir

    check_out_dir(output_dir, None, is_run_folder, flag="--output-dir", force=force)


def resume_checkpoint(output_dir: str | os.PathLike[str], resume: bool) -> str | None:
    """The checkpoint to resume from; checkpoints present without --resume are refused (nothing is lost)."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--output-dir {out} is a file; give a folder for checkpoints and the final model")
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if last and not resume:
        raise BadInput(
            f"{out} already holds checkpoints (last: {Path(last).name}); pass --resume to continue"
        )
    if resume and not last:
        console.warn(f"--resume: no checkpoint in {out}; starting from the beginning")
    return last if resume else None


def summary(trainer: Any, output_dir: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> dict:
    """A small train_summary.json (final step, last logged metrics) for scripts and CI."""
    history = trainer.state.log_history
    last = {k: v for h in history for k, v in h.items() if isinstance(v, (int, float))}
    data = {"global_step": trainer.state.global_step, "last": last, **(extra or {})}
    if trainer.is_world_process_zero():
        from differad_cli.core.io import atomic_write

        atomic_write(Path(output_dir) / "train_summary.json", [json.dumps(data, indent=2)])
    return data
