"""The MVTec AD 2 layout (``mvtec_ad_2/``): ``<cat>/train/good/`` and ``<cat>/validation/good/`` normal pool,
``<cat>/test_public/{good,bad}/`` targets, ``<cat>/test_public/ground_truth/bad/<stem>_mask.png`` masks.

``test_private/`` and ``test_private_mixed/`` carry no labels (they are scored on MVTec's server): they are
counted and never become targets or references."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from differad_cli.core import console
from differad_cli.pair.layouts.base import (
    Category,
    Target,
    category_dirs,
    images_in,
    mask_for,
    unused_masks,
    warn_list,
)

EXPECTED = (
    "<category>/train/good/, <category>/validation/good/, <category>/test_public/{good,bad}/ and "
    "<category>/test_public/ground_truth/bad/<stem>_mask.png (ROOT = mvtec_ad_2/ or one category folder)"
)
UNLABELLED = ("test_private", "test_private_mixed")


def matches(root: Path) -> bool:
    return bool(category_dirs(root, (("test_public",),)))


def read(root: Path, split: str, only: Collection[str] | None = None) -> list[Category]:
    """The categories under ``root`` (``only``: just those names) for ``split``."""
    cats = []
    for d in category_dirs(root, (("test_public",), ("train", "validation")), only):
        pool = images_in(d / "train" / "good") + images_in(d / "validation" / "good")
        hidden = sum(
            len([p for p in (d / u).rglob("*") if p.is_file()]) for u in UNLABELLED if (d / u).is_dir()
        )
        if hidden:
            console.info(f"{d.name}: {hidden} unlabelled image(s) in {'/'.join(UNLABELLED)} not used")
        if split == "train":
            cats.append(Category(d.name, pool, [Target(p, "good", None, False) for p in pool], self_ref=True))
            continue
        public = d / "test_public"
        targets = [Target(p, "good", None, False) for p in images_in(public / "good")]
        gt = public / "ground_truth" / "bad"
        no_mask: list[str] = []
        used: set[Path] = set()
        for p in images_in(public / "bad"):
            mask = mask_for(gt, Path(p.name))
            if mask is None:
                no_mask.append(f"{d.name}/{p.relative_to(d)}")
                continue
            used.add(mask.resolve())
            targets.append(Target(p, "bad", mask, True, nonzero=True))
        warn_list(f"defect image(s) without a mask skipped in {d.name}", no_mask)
        warn_list("mask(s) without an image", unused_masks(gt, used, d.name))
        cats.append(Category(d.name, pool, targets))
    return cats
