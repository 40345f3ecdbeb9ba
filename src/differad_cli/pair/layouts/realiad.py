"""The Real-IAD layout (``Real-IAD/``): images in ``realiad_<res>/<cat>/{OK,NG/<defect>}/S<sample>/``, five
camera views per sample (``…_C1_…`` to ``…_C5_…`` in the file name), and the split in one JSON per category,
``realiad_jsons/realiad_jsons/<cat>.json`` (or ``realiad_jsons/<cat>.json``):
``{"meta": {"normal_class": "OK", …}, "train": [...], "test": [...]}``, each entry with ``anomaly_class``,
``image_path`` and ``mask_path`` relative to the category folder.

References come from the target's own camera view: the five views of a part look nothing alike. A defective
entry without a mask (the defect is out of that view's sight) is skipped, never guessed."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from pathlib import Path

from differad_cli.core import console
from differad_cli.core.errors import BadInput
from differad_cli.pair.layouts.base import Category, Target, warn_list

EXPECTED = (
    "realiad_jsons/realiad_jsons/<category>.json and realiad_<res>/<category>/{OK,NG}/ "
    "(ROOT = Real-IAD/, or one realiad_<res>/ folder beside realiad_jsons/)"
)
RESOLUTIONS = ("1024", "512", "256", "raw")  # the first present is used when ROOT holds several
VIEW = re.compile(r"_(C\d+)_")


def _folders(root: Path) -> tuple[Path, Path] | None:
    """(the image folder realiad_<res>, the JSON folder), or None when ROOT is not Real-IAD."""
    if root.name.startswith("realiad_") and root.name != "realiad_jsons":
        top, images = root.parent, root
    else:
        top = root
        found = [top / f"realiad_{r}" for r in RESOLUTIONS if (top / f"realiad_{r}").is_dir()]
        if not found:
            return None
        images = found[0]
    for j in (top / "realiad_jsons" / "realiad_jsons", top / "realiad_jsons"):
        if any(j.glob("*.json")):
            return images, j
    return None


def matches(root: Path) -> bool:
    return _folders(root) is not None


def view_of(p: Path) -> str | None:
    m = VIEW.search(p.name)
    return m.group(1) if m else None


def _load(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: not a Real-IAD split file ({e})") from None
    if not isinstance(doc, dict) or not ({"train", "test"} & set(doc)):
        raise BadInput(f"{path}: not a Real-IAD split file (expected 'train' and 'test' lists)")
    return doc


def read(root: Path, split: str, only: Collection[str] | None = None) -> list[Category]:
    folders = _folders(root)
    if folders is None:
        return []
    images, jsons = folders
    console.info(f"Real-IAD: images from {images.name}/, splits from {jsons.relative_to(images.parent)}/")
    cats = []
    for jf in sorted(jsons.glob("*.json")):
        cat_dir = images / jf.stem
        if not cat_dir.is_dir() or (only is not None and jf.stem not in only):
            continue
        doc = _load(jf)
        normal = str(doc.get("meta", {}).get("normal_class", "OK"))
        missing: list[str] = []
        no_mask: list[str] = []

        def find(rel: str | None, cat_dir: Path = cat_dir, missing: list[str] = missing) -> Path | None:
            if not rel:
                return None
            for base in (cat_dir, images):  # relative to the category, or carrying the category prefix
                if (base / rel).is_file():
                    return base / rel
            missing.append(rel)
            return None

        pool = []
        for e in doc.get("train", []):
            p = find(e.get("image_path")) if e.get("anomaly_class") == normal else None
            if p is not None:
                pool.append(p)
        views = [view_of(p) for p in pool]
        if split == "train":
            targets = [Target(p, "good", None, False, view=v) for p, v in zip(pool, views, strict=True)]
            cats.append(Category(jf.stem, pool, targets, True, views, cat_dir))
            continue
        targets = []
        for e in doc.get("test", []):
            p = find(e.get("image_path"))
            if p is None:
                continue
            kind = str(e.get("anomaly_class"))
            if kind == normal:
                targets.append(Target(p, "good", None, False, view=view_of(p)))
                continue
            mask = find(e.get("mask_path"))
            if mask is None:
                no_mask.append(e.get("image_path", "?"))
                continue
            targets.append(Target(p, kind, mask, True, view=view_of(p), nonzero=True))
        warn_list(f"file(s) named in {jf.name} missing, skipped", missing)
        # by design (the defect is out of that view's sight): never refused under --strict
        warn_list(f"defect image(s) without a mask skipped in {jf.stem}", no_mask, refuse_if_strict=False)
        cats.append(Category(jf.stem, pool, targets, False, views, cat_dir))
    return cats
