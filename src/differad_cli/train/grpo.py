"""train-rl: GRPO with the DCLR reward, group-wise resampling and difficulty-aware weighting (paper III-B2).

Entry: :func:`train_rl`. The trainer subclass is :class:`differad_cli.train.grpo_trainer.DifferadGRPOTrainer`
(imported when training starts, so this module loads without TRL); the resampling and weighting logic is
:mod:`differad_cli.train.resampling`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from differad_cli.core.records import Pair
from differad_cli.train.configs import RLConfig

# ---------------------------------------------------------------------------------------------- pure logic


# ---------------------------------------------------------------------------------------------- trainer


# ------------------------------------------------------------------------------------------ data + command


def rl_dataset(pairs: list[Pair], cfg: RLConfig, family: str, resize: dict[str, int], seed: int) -> Any:
    """Lazy GRPO rows: prompt (seeded paraphrase), [reference, target], gt_box in model coordinates."""
    from differad_cli.core.coords import model_box, model_extent
    from differad_cli.protocol.prompts import build_messages
    from differad_cli.train.data import lazy_dataset, pair_images, prompt_rng

    def row(i: int) -> dict[str, Any]:
        pair = pairs[i]
        rng = prompt_rng(seed, i) if cfg.paraphrase else None
        return {
            "prompt": build_messages(cfg.template, rng=rng),
            "images": pair_images(pair),
            "gt_box": list(model_box(pair, family, resize)),
            "extent": model_extent(pair, family, resize),
            "label": pair.label,
            "id": pair.id,
        }

    return lazy_dataset(len(pairs), row)


def train_rl(
    *,
    output_dir: str | os.PathLike[str],
    recipe: str | os.PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
    trainer_hook: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Run GRPO; returns the train summary. ``options`` override the recipe (CLI values)."""
    from differad_cli.models.load import resize_params
    from differad_cli.train.common import setup, train_and_save
    from differad_cli.train.model import left_padding, suppress_vision_tokens
    from differad_cli.train.rewards import get_reward

    reward_funcs: list[Any] = []

    def rewards(cfg: Any) -> None:  # unknown reward names fail before the model loads
        params = {"alpha": cfg.alpha, "lam": cfg.lam, "tau": cfg.tau, "delta": cfg.delta}
        reward_funcs.extend(get_reward(name, **params) for name in cfg.rewards)

    run = setup("rl", output_dir=output_dir, recipe=recipe, options=options, check=rewards)
    cfg, args = run.cfg, run.args
    assert isinstance(cfg, RLConfig)
    suppress_vision_tokens(args, run.model)
    left_padding(run.processor)
    dataset = rl_dataset(run.pairs, cfg, run.family, resize_params(run.processor), args.seed)
    from differad_cli.train.grpo_trainer import DifferadGRPOTrainer

    trainer = DifferadGRPOTrainer(
        model=run.model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=run.processor,
        peft_config=run.peft_config,
        callbacks=run.callbacks,
        max_resample=cfg.max_resample,
        resample_eps=cfg.resample_eps,
        difficulty_weighting=cfg.difficulty_weighting,
        tau=cfg.tau,
    )
    if trainer_hook is not None:
        trainer_hook(trainer)
    banner = (
        f"train-rl: {len(run.pairs)} pairs, family {run.family}, G={args.num_generations}, rewards "
        f"{'+'.join(cfg.rewards)}, max_resample {cfg.max_resample}, output {output_dir}"
    )
    return train_and_save(trainer, run, output_dir, banner)
