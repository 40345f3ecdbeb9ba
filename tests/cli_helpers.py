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
