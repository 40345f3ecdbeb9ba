"""The DeepPCB layout (the folder holding ``PCBData/``): ``PCBData/group<G>/<G>/<id>_test.jpg`` (the
tested board) with ``<id>_temp.jpg`` (its aligned defect-free template), boxes in
``PCBData/group<G>/<G>_not/<id>.txt``, and the split in ``PCBData/trainval.txt`` / ``PCBData/test.txt``.

The template *is* the reference: no retrieval. Split lines name ``group<G>/<G>/<id>.jpg`` although the
files carry ``_test``/``_temp``; box lines are ``x1 y1 x2 y2 type`` separated by spaces (the README says
commas; both are read), used exactly as annotated with x2/y2 exclusive. Every tested image has several
defects."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from differad_cli.core import console
from differad_cli.core.boxes import IntBox
from differad_cli.pair.layouts.base import Category, Target, warn_list

EXPECTED = (
    "PCBData/group<G>/<G>/<id>_test.jpg + <id>_temp.jpg, PCBData/group<G>/<G>_not/<id>.txt and "
    "PCBData/{trainval,test}.txt (ROOT = the folder holding PCBData/, or PCBData/ itself)"
)
CATEGORY = "deeppcb"
SPLIT_FILES = {"test": "test.txt", "train": "trainval.txt"}


def _data(root: Path) -> Path | None:
    for d in (root / "PCBData", root):
        if any(d.glob("group*/*/*_test.jpg")):
            return d
    return None


def matches(root: Path) -> bool:
    return _data(root) is not None


def read_boxes(path: Path, bad: list[str]) -> tuple[IntBox, ...]:
    """Boxes of one annotation file; a malformed line is reported in ``bad`` and left out."""
    boxes = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = re.split(r"[,\s]+", line.strip())
        try:
            x1, y1, x2, y2 = (int(float(v)) for v in parts[:4])
        except ValueError:
            parts = []
        if len(parts) < 4:
            bad.append(f"{path.name}:{n}")
            continue
        boxes.append((x1, y1, x2, y2))
    return tuple(boxes)


def _listed(data: Path, split: str) -> list[tuple[Path, Path]] | None:
    """(tested image, annotation) pairs named by the split file, or None without one."""
    listing = data / SPLIT_FILES[split]
    if not listing.is_file():
        return None
    out = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            img = data / parts[0]
            out.append((img.with_name(f"{img.stem}_test{img.suffix}"), data / parts[1]))
    return out


def read(root: Path, split: str, only: Collection[str] | None = None) -> list[Category]:
    data = _data(root)
    if data is None or (only is not None and CATEGORY not in only):
        return []
    pairs = _listed(data, split)
    if pairs is None:
        console.warn(f"no {SPLIT_FILES[split]} in {data}: every tested image is used")
        pairs = [
            (p, p.parent.parent / f"{p.parent.name}_not" / f"{p.name.removesuffix('_test.jpg')}.txt")
            for p in sorted(data.glob("group*/*/*_test.jpg"))
        ]
    targets, missing, bad = [], [], []
    for test, ann in pairs:
        temp = test.with_name(test.name.replace("_test", "_temp"))
        lost = [p for p in (test, temp, ann) if not p.is_file()]
        if lost:
            missing.extend(p.relative_to(data).as_posix() for p in lost)
            continue
        targets.append(Target(test, None, None, True, boxes=read_boxes(ann, bad), ref=temp))
    warn_list(f"file(s) named in {SPLIT_FILES[split]} missing, skipped", missing)
    warn_list("malformed box line(s) left out", bad)
    return [Category(CATEGORY, [], targets, root=data)] if targets else []
