"""The VisA layout as it unpacks (``VisA_20220922/``): ``<cat>/Data/Images/{Normal,Anomaly}/*.JPG``, masks in
``<cat>/Data/Masks/Anomaly/*.png``, and the split and labels from ``split_csv/1cls.csv``.

The CSV (``object,split,label,image,mask``, paths relative to the top folder) is the authority: the test split
holds normal images from ``Data/Images/Normal`` too, so the folder alone would make a test image the reference
of itself. Masks hold small non-zero values rather than 255, so any non-zero pixel is anomalous."""

from __future__ import annotations

import csv
from collections.abc import Collection
from pathlib import Path

from differad_cli.core.errors import BadInput
from differad_cli.pair.layouts.base import Category, Target, warn_list

EXPECTED = (
    "split_csv/1cls.csv and <category>/Data/Images/{Normal,Anomaly}/, <category>/Data/Masks/Anomaly/ "
    "(ROOT = VisA's top folder, e.g. VisA_20220922/, or one category folder inside it)"
)
SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")


def _top(root: Path) -> tuple[Path, str | None]:
    """(the folder holding split_csv/, the one category to keep or None)."""
    if (root / SPLIT_CSV).is_file():
        return root, None
    if (root.parent / SPLIT_CSV).is_file() and (root / "Data").is_dir():
        return root.parent, root.name
    return root, None


def matches(root: Path) -> bool:
    top, _ = _top(root)
    return (top / SPLIT_CSV).is_file()


def read(root: Path, split: str, only: Collection[str] | None = None) -> list[Category]:
    top, single = _top(root)
    if not (top / SPLIT_CSV).is_file():
        return []
    with (top / SPLIT_CSV).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not set(COLUMNS) <= set(rows[0]):
        raise BadInput(
            f"{top / SPLIT_CSV}: expected the columns {','.join(COLUMNS)}, got {','.join(rows[0])}"
        )
    pools: dict[str, list[Path]] = {}
    targets: dict[str, list[Target]] = {}
    missing: list[str] = []
    for r in rows:
        cat = r["object"].strip()
        if (single is not None and cat != single) or (only is not None and cat not in only):
            continue
        img = top / r["image"].strip()
        mask = top / r["mask"].strip() if r["mask"].strip() else None
        if not img.is_file() or (mask is not None and not mask.is_file()):
            missing.append(r["mask"].strip() if img.is_file() else r["image"].strip())
            continue
        normal = r["label"].strip() == "normal"
        if r["split"].strip() == "train":
            if normal:  # the 1cls split trains on normal images only; anything else is not a reference
                pools.setdefault(cat, []).append(img)
        elif split == "test":
            if not normal and mask is None:
                missing.append(f"{r['image'].strip()} (anomaly without a mask)")
                continue
            t = Target(img, "good" if normal else "anomaly", mask, not normal, nonzero=True)
            targets.setdefault(cat, []).append(t)
    warn_list(f"file(s) named in {SPLIT_CSV.as_posix()} missing, skipped", missing)
    cats = []
    for cat in sorted(set(pools) | set(targets)):
        pool = pools.get(cat, [])
        if split == "train":
            cats.append(Category(cat, pool, [Target(p, "good", None, False) for p in pool], self_ref=True))
        else:
            cats.append(Category(cat, pool, targets.get(cat, [])))
    return cats
