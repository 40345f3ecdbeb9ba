"""Datasets for the trainers: rows built lazily from pair records (images decoded on access), seeded
prompts."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from differad_cli.core.records import Pair


def pair_images(pair: Pair) -> list[Any]:
    """[reference, target] as PIL RGB images (image 1 = reference, image 2 = target)."""
    from PIL import Image

    from differad_cli.core.images import load_rgb

    return [Image.fromarray(load_rgb(pair.ref)), Image.fromarray(load_rgb(pair.tgt))]


def prompt_rng(seed: int, index: int) -> random.Random:
    """The paraphrase drawn for sample ``index`` depends only on (seed, index): every copy of a GRPO group and
    every rank sees the same prompt, and a resumed run sees the same prompts."""
    return random.Random(seed * 1_000_003 + index)


def lazy_dataset(n: int, make_row: Callable[[int], dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` of ``n`` indices whose rows (images included) are built on access."""
    from datasets import Dataset

    ds = Dataset.from_dict({"pair_index": list(range(n))})

    def transform(batch: dict[str, list]) -> dict[str, list]:
        rows = [make_row(i) for i in batch["pair_index"]]
        return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}

    return ds.with_transform(transform)
