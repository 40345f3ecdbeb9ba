"""Helpers shared by CLI tests (imported by test modules; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: object) -> int:
    """Run `differad ARGS` in-process through the real entry point (its error handling too); the exit code."""
    import differad_cli.cli.app as cli

    monkeypatch.setattr(sys, "argv", ["differad", *map(str, args)])
    try:
        cli.main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def pattern(kind: str, seed: int = 0, size: int = 32):
    """Distinct textures (RGB uint8) with noise: retrieval must tell them apart."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = {
        "hstripes": (yy // 4) % 2 * 200 + 30,
        "vstripes": (xx // 4) % 2 * 200 + 30,
        "checker": ((xx // 8 + yy // 8) % 2) * 200 + 30,
        "dark": np.full((size, size), 20),
    }[kind].astype(np.float32)
    img = np.stack([base, base * 0.8, base * 0.6], axis=2) + rng.normal(0, 6, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def build_tiny_clip(out: Path) -> Path:
    """A tiny randomly initialized CLIP folder (model + image processor, seed 0) for the `clip` embedder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config={"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )  # fmt: skip
    CLIPModel(cfg).save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        out
    )
    return out
