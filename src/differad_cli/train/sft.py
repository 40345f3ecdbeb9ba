"""train-cold: cold-start difference perception by SFT on ``<think>description</think><answer>box</answer>``.

Rows are TRL prompt/completion pairs with both images, so the loss covers the answer only; the box is
written in the model family's coordinates (coords.to_model) exactly as the RL stage and the parser expect it.
"""

from __future__ import annotations

import os
from typing import Any

from differad_cli.core.coords import format_box
from differad_cli.core.records import Pair
from differad_cli.train.configs import ColdConfig


def target_text(
    pair: Pair,
    family: str,
    resize: dict[str, int],
    *,
    use_record: bool = True,
    template: str = "differad",
    think: str = "description",
) -> str:
    """The completion the model learns for ``pair``; the staged template gets its three stages
    (region -> analysis -> decision) inside <think>, in the form its format reward checks. ``think``
    short keeps only where and how large (a coarse first step before the box: what a ~1M-parameter model
    learns fastest, docs/learning.md); grid writes which rows and columns of the model's image-token grid
    (at most 8x8) differ and snaps the box to those cells (what the CPU-scale learner learns to localize
    with); empty leaves <think></think>."""
    import dataclasses

    from differad_cli.core.coords import model_box
    from differad_cli.protocol.descriptions import (
        description_for,
        grid_scan,
        region_name,
        short_description,
        token_grid,
    )

    if think == "grid":
        desc, snapped = grid_scan(pair, *token_grid(pair, resize))
        pair = dataclasses.replace(pair, box=snapped)
    elif think == "short":
        desc = short_description(pair)
    elif think == "empty":
        desc = ""
    else:
        desc = description_for(pair, use_record=use_record)
    answer = f"<answer>{format_box(model_box(pair, family, resize))}</answer>"
    if template != "staged":
        return f"<think>{desc}</think>{answer}"
    region = region_name(pair.box, pair.width, pair.height) if pair.label else "no region differs"
    decision = "anomalous" if pair.label else "normal"
    stages = f"<region>{region}</region><analysis>{desc}</analysis><decision>{decision}</decision>"
    return f"<think>{stages}</think>{answer}"


def sft_dataset(pairs: list[Pair], cfg: ColdConfig, family: str, resize: dict[str, int], seed: int) -> Any:
    """Lazy prompt/completion rows with [reference, target] images (loaded when a batch is built)."""
    from differad_cli.protocol.prompts import build_messages
    from differad_cli.train.data import lazy_dataset, pair_images, prompt_rng

    texts: dict[int, str] = {}

    def row(i: int) -> dict[str, Any]:
        pair = pairs[i]
        if i not in texts:  # descriptions read both images once; cache the text, not the pixels
            texts[i] = target_text(
                pair, family, resize, use_record=cfg.use_descriptions, template=cfg.template, think=cfg.think
            )
        rng = prompt_rng(seed, i) if cfg.paraphrase else None
        return {
            "prompt": build_messages(cfg.template, rng=rng),
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": texts[i]}]}],
            "images": pair_images(pair),
            "id": pair.id,
        }

    return lazy_dataset(len(pairs), row)


def train_cold(
    *,
    output_dir: str | os.PathLike[str],
    recipe: str | os.PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the cold-start SFT; returns the train summary. ``options`` override the recipe (CLI values)."""
    from trl import SFTTrainer

    from differad_cli.models.load import resize_params
    from differad_cli.train.common import setup, train_and_save

    run = setup("cold", output_dir=output_dir, recipe=recipe, options=options)
    cfg, args = run.cfg, run.args
    assert isinstance(cfg, ColdConfig)
    dataset = sft_dataset(run.pairs, cfg, run.family, resize_params(run.processor), args.seed)
    trainer = SFTTrainer(
        model=run.model,
        args=args,
        train_dataset=dataset,
        processing_class=run.processor,
        peft_config=run.peft_config,
        callbacks=run.callbacks,
    )
    banner = f"train-cold: {len(run.pairs)} pairs, family {run.family}, output {output_dir}"
    return train_and_save(trainer, run, output_dir, banner)
