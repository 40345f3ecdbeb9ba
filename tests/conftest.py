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


@pytest.fixture(scope="session")
def readme_walkthrough(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """The README walkthrough run as written through the real CLI (one process per command) in a fresh
    folder that sees the repository's recipes/: the folder and each command's CompletedProcess. Shared by the
    walkthrough's checks and the README examples that continue from its files."""
    from readme_helpers import REPO, differad, walkthrough

    root = tmp_path_factory.mktemp("walkthrough")
    (root / "recipes").symlink_to(REPO / "recipes")
    return root, [differad(args, root) for args in walkthrough()]
