"""The MVTec AD layout: ``<cat>/train/good/`` normal pool, ``<cat>/test/<defect>/`` targets
(``good`` = normal), ``<cat>/ground_truth/<defect>/<stem>_mask.png`` masks."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from differad_cli.pair.layouts import base
from differad_cli.pair.layouts.base import Category, Target

EXPECTED = (
    "<category>/train/good/*.png, <category>/test/<defect>/*.png and "
    "<category>/ground_truth/<defect>/<stem>_mask.png (ROOT = a category folder or the folder holding them)"
)


def matches(root: Path) -> bool:
    """MVTec AD proper: a ground_truth/ folder beside train/good/ (other trees have train/ and test/ too)."""
    return bool(base.category_dirs(root, (("train/good", "test", "ground_truth"),)))


def read(root: Path, split: str, only: Collection[str] | None = None) -> list[Category]:
    """The categories under ``root`` (``only``: just those names) for ``split``."""
    cats = []
    for d in base.category_dirs(root, (("train",), ("test",)), only):
        pool = base.images_in(d / "train" / "good")
        if split == "train":
            cats.append(Category(d.name, pool, [Target(p, "good", None, False) for p in pool], self_ref=True))
            continue
        targets: list[Target] = []
        no_mask: list[str] = []
        used: set[Path] = set()
        test = d / "test"
        for defect in sorted(x for x in test.iterdir() if x.is_dir()) if test.is_dir() else []:
            for p in base.images_in(defect):
                if defect.name == "good":
                    targets.append(Target(p, "good", None, False))
                    continue
                mask = base.mask_for(d / "ground_truth" / defect.name, p.relative_to(defect))
                if mask is None:
                    no_mask.append(f"{d.name}/{p.relative_to(d)}")
                    continue
                used.add(mask.resolve())
                targets.append(Target(p, defect.name, mask, True))
        base.warn_list(f"defect image(s) without a mask skipped in {d.name}", no_mask)
        base.warn_list("mask(s) without an image", base.unused_masks(d / "ground_truth", used, d.name))
        cats.append(Category(d.name, pool, targets))
    return cats
