"""Fixtures shared across the suite: a small synthetic pair set and the tiny offline Qwen2-VL.

Both are built once per session by the project's own code (no download), in pytest's temp folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def synth_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pairs.jsonl of 12 synthetic 64x64 pairs (seed 0), shared read-only by tests."""
    from differad_cli.synth.config import SynthConfig
    from differad_cli.synth.run import synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(SynthConfig(out=out, n=12, size=64, seed=0))
    return out / "pairs.jsonl"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialized tiny Qwen2-VL checkpoint (seed 0), shared read-only by tests."""
    from differad_cli.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(out, seed=0)
    return out
