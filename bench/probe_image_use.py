"""Probe: does a trained model's answer depend on the target image? (docs/learning.md, the demo's section)

For each held-out pair, the teacher-forced loss of the completion train-cold teaches (``sft.target_text``: the
``<think>`` and the box, then the chat template's end of turn, as TRL labels it) is computed with the pair's
own [reference, target] images, and with another pair's target image in place of its own (``--seeds`` seeded
derangements, averaged). A model that uses the images must find its own pair's answer likelier: the gap
(other - own) is then positive and the own images give the lower loss for most pairs. A model that learned
only the protocol and the answers' priors scores a gap ~0 and wins about half the pairs. Before greedy answers
localize anything, the gap shows whether the model has started to look.

    python bench/probe_image_use.py --pairs demo/data/test/pairs.jsonl demo/models/learner demo/runs/cold \
        [--n 48] [--seeds 5] [--think grid] [--template differad]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path
from typing import Any


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of range(n) without fixed points (n >= 2): each pair gets another's target."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[(order.index(i) + 1) % n] for i in range(n)]


def answer_inputs(processor: Any, messages: list, answer: str, images: list) -> tuple[dict, Any, int]:
    """(model inputs, labels, the prompt's length in tokens): the prompt with its generation header, then
    ``answer`` as the assistant's turn rendered by the chat template (its end-of-turn included, as TRL's
    prompt/completion collator labels it); every prompt token is masked out of the labels."""
    completion = [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    whole = processor.apply_chat_template(messages + completion, tokenize=False)
    if not whole.startswith(prompt):
        raise SystemExit("the chat template does not render the prompt as a prefix of prompt + answer")
    full = processor(text=[whole], images=images, return_tensors="pt")
    n_prompt = processor(text=[prompt], images=images, return_tensors="pt")["input_ids"].shape[1]
    labels = full["input_ids"].clone()
    labels[:, :n_prompt] = -100
    return full, labels, n_prompt


def answer_losses(
    model_dir: Path, pairs: list, think: str, template: str, seeds: list[int]
) -> tuple[list[float], list[list[float]]]:
    """Per pair: the loss with its own images, and per seed the loss with that seed's other target."""
    import torch

    from differad_cli.models.load import load_model_and_processor, resize_params
    from differad_cli.protocol.prompts import build_messages
    from differad_cli.train.data import pair_images
    from differad_cli.train.sft import target_text

    model, processor, family = load_model_and_processor(model_dir, device="cpu", dtype="fp32")
    resize, messages = resize_params(processor), build_messages(template)
    others = [derangement(len(pairs), s) for s in seeds]

    def loss(answer: str, images: list) -> float:
        full, labels, _ = answer_inputs(processor, messages, answer, images)
        with torch.no_grad():
            return float(model(**full, labels=labels).loss)

    images = [pair_images(pair) for pair in pairs]  # decoded once: every seed reuses the targets
    own, swapped = [], [[] for _ in seeds]
    for k, pair in enumerate(pairs):
        answer = target_text(pair, family, resize, template=template, think=think)
        ref, tgt = images[k]
        own.append(loss(answer, [ref, tgt]))
        for out, other in zip(swapped, others, strict=True):
            out.append(loss(answer, [ref, images[other[k]][1]]))
    return own, swapped


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="checkpoint or adapter folders")
    ap.add_argument("--pairs", type=Path, required=True, help="held-out pairs.jsonl")
    ap.add_argument("--n", type=int, default=48, help="pairs probed (the first N)")
    ap.add_argument("--seeds", type=int, default=5, help="derangements averaged (seeds 0..K-1)")
    ap.add_argument("--think", default="grid", help="the <think> the model was trained with")
    ap.add_argument("--template", default="differad")
    args = ap.parse_args()

    from differad_cli.core.records import read_pairs

    pairs = read_pairs(args.pairs)[: args.n]
    if len(pairs) < 2 or args.seeds < 1:
        raise SystemExit(f"{args.pairs}: at least 2 pairs and 1 seed are needed")
    seeds = list(range(args.seeds))
    print(f"probe_image_use: {len(pairs)} held-out pairs of {args.pairs}, think {args.think}, seeds {seeds}")
    print("| model | answer loss, own images | another pair's target | gap (seeds' range) | own lower in |")
    print("|---|---|---|---|---|")
    for model_dir in args.models:
        own, swapped = answer_losses(model_dir, pairs, args.think, args.template, seeds)
        mean_own = statistics.fmean(own)
        gaps = [statistics.fmean(s) - mean_own for s in swapped]
        wins = [sum(a < b for a, b in zip(own, s, strict=True)) for s in swapped]
        print(
            f"| {model_dir} | {mean_own:.4f} | {statistics.fmean(map(statistics.fmean, swapped)):.4f} "
            f"| {statistics.fmean(gaps):+.4f} ({min(gaps):+.4f} to {max(gaps):+.4f}) "
            f"| {statistics.fmean(wins):.1f} / {len(pairs)} ({min(wins)}-{max(wins)}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
