"""bench/probe_image_use.py: every pair gets another pair's target, only the answer is scored, and the swap
reaches the loss."""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import probe_image_use  # noqa: E402


def test_derangement_moves_every_pair_and_follows_the_seed() -> None:
    for n in range(2, 30):
        for seed in range(3):
            other = probe_image_use.derangement(n, seed)
            assert sorted(other) == list(range(n)) and all(other[i] != i for i in range(n)), (n, seed)
            assert other == probe_image_use.derangement(n, seed)
    assert probe_image_use.derangement(30, 0) != probe_image_use.derangement(30, 1)


def test_only_the_answer_and_its_end_of_turn_are_scored(tiny_model_dir: Path, synth_pairs: Path) -> None:
    from differad_cli.core.records import read_pairs
    from differad_cli.models.load import load_processor
    from differad_cli.protocol.prompts import build_messages
    from differad_cli.train.data import pair_images

    processor = load_processor(tiny_model_dir)
    messages, images = build_messages("differad"), pair_images(read_pairs(synth_pairs)[0])
    answer = "<think>y 00111000 x 00011000</think><answer>(100,200),(300,400)</answer>"
    full, labels, n_prompt = probe_image_use.answer_inputs(processor, messages, answer, images)
    prompt_only = processor(
        text=[processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)],
        images=images,
        return_tensors="pt",
    )["input_ids"]
    assert full["input_ids"][0, :n_prompt].tolist() == prompt_only[0].tolist()  # the prompt is a prefix
    scored = full["input_ids"][0][labels[0] != -100]
    text = processor.tokenizer.decode(scored)
    assert text.startswith(answer) and len(text) > len(answer)  # the answer, then the template's end of turn
    assert int((labels[0] != -100).sum()) == full["input_ids"].shape[1] - n_prompt


def test_answer_losses_differ_only_by_the_target_image(tiny_model_dir: Path, synth_pairs: Path) -> None:
    from differad_cli.core.records import read_pairs

    pairs = read_pairs(synth_pairs)[:3]
    own, swapped = probe_image_use.answer_losses(tiny_model_dir, pairs, "grid", "differad", [0, 1])
    assert len(own) == 3 and [len(s) for s in swapped] == [3, 3]
    assert all(math.isfinite(v) and v > 0 for v in own + swapped[0] + swapped[1])
    assert any(abs(a - b) > 1e-6 for a, b in zip(own, swapped[0], strict=True))  # the other target got in
    again, _ = probe_image_use.answer_losses(tiny_model_dir, pairs, "grid", "differad", [0])
    assert again == own  # deterministic: the same model, images and answer give the same loss
