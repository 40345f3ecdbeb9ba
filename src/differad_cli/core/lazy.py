"""Lazy package exports, so ``from differad_cli.train import train_rl`` works without the CLI paying for it.

A stage package names its config and entry function at the top; the module holding each is imported only
when the name is first used (``differad --help`` must not import torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[attr]`` (a submodule of ``package``) on first use."""

    def __getattr__(attr: str) -> Any:
        if attr not in names:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        return getattr(importlib.import_module(f"{package}.{names[attr]}"), attr)

    return __getattr__
