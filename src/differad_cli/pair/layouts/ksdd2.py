"""The Kolektor SDD2 layout (``KolektorSDD2/``): ``{train,test}/<id>.png`` with ``<id>_GT.png`` beside each.

Every image has a ground-truth file; an empty one means a defect-free image, so labels come from the masks.
The pool is the defect-free training images (the defective ones are never references); the test images are
the targets. Masks are 0/255 but any non-zero pixel counts."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from differad_cli.core import console
from differad_cli.core.images import load_mask
from differad_cli.pair.layouts.base import Category, Target, images_in, warn_list

EXPECTED = "train/<id>.png + train/<id>_GT.png and test/<id>.png + test/<id>_GT.png (ROOT = KolektorSDD2/)"
CATEGORY = "ksdd2"
GT = "_GT"


def _pairs(folder: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, ground truth) pairs of a split folder, and the images without a ground-truth file."""
    out, lost = [], []
    for p in images_in(folder):
        if p.stem.endswith(GT):
            continue
        gt = p.with_name(f"{p.stem}{GT}{p.suffix}")
        if gt.is_file():
            out.append((p, gt))
        else:
            lost.append(f"{folder.name}/{p.name}")
    return out, lost


def matches(root: Path) -> bool:
    return (root / "train").is_dir() and any((root / "train").glob(f"*{GT}.png"))


def read(root: Path, split: str, only: Collection[str] | None = None) -> list[Category]:
    if not matches(root) or (only is not None and CATEGORY not in only):
        return []
    train, lost = _pairs(root / "train")
    pool = [p for p, gt in console.progress(train, desc="ksdd2 train masks", unit="mask") if not _defect(gt)]
    if len(pool) < len(train):
        console.info(f"{CATEGORY}: {len(train) - len(pool)} defective training image(s) are not references")
    if split == "train":
        warn_list("image(s) without a _GT file skipped", lost)
        return [Category(CATEGORY, pool, [Target(p, "good", None, False) for p in pool], True, root=root)]
    test, lost_test = _pairs(root / "test")
    warn_list("image(s) without a _GT file skipped", lost + lost_test)
    # not expected anomalous: the mask decides, and an empty _GT file is a normal image, not a lost defect
    targets = [Target(p, None, gt, False, nonzero=True) for p, gt in test]
    return [Category(CATEGORY, pool, targets, root=root)]


def _defect(gt: Path) -> bool:
    return bool(np.any(load_mask(gt, nonzero=True)))
