"""Helpers shared by CLI tests (imported by test modules; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import sys

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
