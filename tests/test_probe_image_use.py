"""bench/probe_image_use.py: every pair gets another pair's target, and the swap reaches the loss."""

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


def test_answer_losses_differ_only_by_the_target_image(tiny_model_dir: Path, synth_pairs: Path) -> None:
    from differad_cli.core.records import read_pairs

    pairs = read_pairs(synth_pairs)[:3]
    own, swapped = probe_image_use.answer_losses(tiny_model_dir, pairs, "grid", "differad", 0)
    assert len(own) == len(swapped) == 3 and all(math.isfinite(v) and v > 0 for v in own + swapped)
    assert any(abs(a - b) > 1e-6 for a, b in zip(own, swapped, strict=True))  # the other target got in
    again, _ = probe_image_use.answer_losses(tiny_model_dir, pairs, "grid", "differad", 0)
    assert again == own  # deterministic: the same model, images and answer give the same loss
