"""The generic folder layout: ``<cat>/normal/`` pool, ``<cat>/test/`` targets (sub-folders name the subset),
``<cat>/mask/`` masks mirroring ``test/``; a target without a (non-empty) mask is normal."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from differad_cli.pair.layouts import base
from differad_cli.pair.layouts.base import Category, Target

EXPECTED = (
    "<category>/normal/ (normal images), <category>/test/ (targets, optionally in subset folders) "
    "and <category>/mask/ (masks named like the targets) (ROOT = one category or the folder holding them)"
)


def matches(root: Path) -> bool:
    return bool(base.category_dirs(root, (("normal", "test"),)))


def read(root: Path, split: str, only: Collection[str] | None = None) -> list[Category]:
    """The categories under ``root`` (``only``: just those names) for ``split``."""
    cats = []
    for d in base.category_dirs(root, (("normal", "test"), ("normal",)), only):
        pool = base.images_in(d / "normal")
        if split == "train":
            cats.append(Category(d.name, pool, [Target(p, None, None, False) for p in pool], self_ref=True))
            continue
        test, mask_dir = d / "test", d / "mask"
        targets: list[Target] = []
        used: set[Path] = set()
        for p in base.images_in(test):
            rel = p.relative_to(test)
            mask = base.mask_for(mask_dir, rel)
            if mask is not None:
                used.add(mask.resolve())
            subset = rel.parent.as_posix() if rel.parent != Path(".") else None
            targets.append(Target(p, subset, mask, mask is not None))
        base.warn_list("mask(s) without an image", base.unused_masks(mask_dir, used, d.name))
        cats.append(Category(d.name, pool, targets))
    return cats
