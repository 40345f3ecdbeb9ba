"""train-cold: cold-start difference perception by SFT on ``<think>description</think><answer>box</answer>``.

Rows are TRL prompt/completion pairs with both images, so the loss covers the answer only; the box is
written in the model family's coordinates (coords.to_model) exactly as the RL stage and the parser expect it.
"""

from __future__ import annotations

import os
from typing import Any

from differad_cli import console
from differad_cli.configs import ColdConfig, build_configs
from differad_cli.coords import format_box
from differad_cli.records import Pair


def target_text(
    pair: Pair, family: str, resize: dict[str, int], *, use_record: bool = True, template: str = "differad"
) -> str:
    """The completion the model learns for ``pair``; the staged template (seed 002) gets its three stages
    (region -> analysis -> decision) inside <think>, in the form its format reward checks."""
    from differad_cli.descriptions import description_for, region_name
    from differad_cli.training import model_box

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
    from differad_cli.prompts import build_messages
    from differad_cli.training import lazy_dataset, pair_images, prompt_rng

    texts: dict[int, str] = {}

    def row(i: int) -> dict[str, Any]:
        pair = pairs[i]
        if i not in texts:  # descriptions read both images once; cache the text, not the pixels
            texts[i] = target_text(
                pair, family, resize, use_record=cfg.use_descriptions, template=cfg.template
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
    from differad_cli.models import quiet_accelerator_probe, resize_params
    from differad_cli.training import (
        check_model_path,
        check_template,
        load_trainable,
        lora_config,
        make_eval_callback,
        resume_checkpoint,
        route_logs,
        save_final,
        summary,
        validate_pairs,
    )

    quiet_accelerator_probe()
    cfg, args = build_configs("cold", recipe=recipe, cli=dict(options or {}), output_dir=str(output_dir))
    assert isinstance(cfg, ColdConfig)
    check_template(cfg.template)
    pairs = validate_pairs(cfg.pairs)
    eval_pairs = validate_pairs(cfg.eval_pairs, what="--eval-pairs") if cfg.eval_pairs else None
    model_path, family = check_model_path(cfg.model)
    checkpoint = resume_checkpoint(output_dir, cfg.resume)

    from trl import SFTTrainer

    model, processor = load_trainable(model_path, cfg, args, checkpoint)
    dataset = sft_dataset(pairs, cfg, family, resize_params(processor), args.seed)
    callbacks = []
    if eval_pairs:
        callbacks.append(make_eval_callback(eval_pairs, cfg, family, output_dir))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(cfg) if cfg.lora and not hasattr(model, "peft_config") else None,
        callbacks=callbacks,
    )
    for cb in callbacks:
        cb.trainer = trainer
    route_logs(trainer, output_dir, checkpoint)
    console.info(f"train-cold: {len(pairs)} pairs, family {family}, output {output_dir}")
    trainer.train(resume_from_checkpoint=checkpoint)
    save_final(trainer, processor, cfg, output_dir)
    return summary(trainer, output_dir, {"family": family, "pairs": len(pairs)})
