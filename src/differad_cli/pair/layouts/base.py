"""What every dataset layout shares: the target/category records a layout yields, defect regions (from masks
or annotated boxes) and the one multi-defect policy that turns them into the record's single box."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from differad_cli.core import console
from differad_cli.core.boxes import ZERO_BOX, IntBox
from differad_cli.core.errors import BadInput
from differad_cli.core.images import IMAGE_SUFFIXES, load_mask

MAX_LISTED = 10


@dataclass
class Checks:
    """How one run treats input it cannot use: skipped with a count (default) or refused (``--strict``).
    ``stray`` collects the non-image files met in the image folders the layouts scan."""

    strict: bool = False
    stray: set[Path] = field(default_factory=set)


_CHECKS: ContextVar[Checks | None] = ContextVar("differad_pair_checks", default=None)


@contextmanager
def checking(strict: bool) -> Iterator[Checks]:
    """The checks in force while layouts read (``warn_list`` and ``images_in`` consult them)."""
    checks = Checks(strict)
    token = _CHECKS.set(checks)
    try:
        yield checks
    finally:
        _CHECKS.reset(token)


def strict() -> bool:
    c = _CHECKS.get()
    return c is not None and c.strict


@dataclass
class Target:
    path: Path
    subset: str | None
    mask: Path | None
    anomalous: bool  # expected from the folder (defect folder); the mask decides the final label
    more_masks: tuple[Path, ...] = ()  # further mask files of the same image, unioned (MVTec LOCO)
    boxes: tuple[IntBox, ...] | None = None  # annotated boxes instead of a mask (DeepPCB), x2/y2 exclusive
    ref: Path | None = None  # the dataset's own reference (DeepPCB's template): no retrieval
    view: str | None = None  # camera view: references come from the same view (Real-IAD)
    nonzero: bool = False  # any non-zero mask pixel is anomalous (masks holding ids or per-type levels)


@dataclass
class Category:
    name: str
    pool: list[Path]
    targets: list[Target]
    self_ref: bool = False  # targets are the pool itself (split=train): never pick an image as its own ref
    pool_views: list[str | None] | None = None  # the camera view of each pool image (aligned with pool)
    root: Path | None = None  # record ids are relative to it (default: ROOT/<name>, or ROOT for one category)

    @property
    def given_refs(self) -> bool:
        """Every target brings its own reference, so no pool or retrieval is needed."""
        return bool(self.targets) and all(t.ref is not None for t in self.targets)


def images_in(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive, sorted, hidden files and folders skipped); any other file is
    noted as stray for the run's summary (an error under ``--strict``)."""
    if not folder.is_dir():
        return []
    images, other = [], []
    for p in folder.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(folder).parts) or not p.is_file():
            continue
        (images if p.suffix.lower() in IMAGE_SUFFIXES else other).append(p)
    checks = _CHECKS.get()
    if checks is not None:
        checks.stray.update(other)
    return sorted(images)


def mask_for(mask_dir: Path, rel: Path) -> Path | None:
    """The mask of target ``rel`` in ``mask_dir``: same relative stem, optional ``_mask``, any format."""
    base = mask_dir / rel.parent
    for stem in (f"{rel.stem}_mask", rel.stem):
        for suffix in (rel.suffix, *IMAGE_SUFFIXES):
            p = base / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def warn_list(what: str, items: list[str], *, refuse_if_strict: bool = True) -> None:
    """Warn about input left out, with a count and the first few; under ``--strict`` refuse it instead,
    naming the first (``refuse_if_strict=False`` for what an option chose to leave out)."""
    if items and refuse_if_strict and strict():
        what = what.replace(", skipped", "").replace(" skipped", "").replace(" ignored", "")
        raise BadInput(f"--strict: {len(items)} {what}; the first: {items[0]}")
    if items:
        shown = ", ".join(items[:MAX_LISTED])
        more = f" (and {len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
        console.warn(f"{len(items)} {what}: {shown}{more}")


def category_dirs(
    root: Path, marker_sets: tuple[tuple[str, ...], ...], only: Collection[str] | None = None
) -> list[Path]:
    """The category folders of ``root`` (``root`` itself when it is one); ``only``: just those names."""

    def is_cat(d: Path) -> bool:
        return any(all((d / m).is_dir() for m in markers) for markers in marker_sets)

    if is_cat(root):
        return [root] if only is None or root.name in only else []
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".") and (only is None or d.name in only) and is_cat(d)
    )


def unused_masks(mask_dir: Path, used: set[Path], cat: str) -> list[str]:
    return [f"{cat}/{p.relative_to(mask_dir.parent)}" for p in images_in(mask_dir) if p.resolve() not in used]


def mask_regions(mask: np.ndarray) -> tuple[list[IntBox], list[int]]:
    """Boxes and pixel areas of the mask's 8-connected components, in scan order."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    boxes = [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in stats[1:n, :4]]
    return boxes, [int(a) for a in stats[1:n, cv2.CC_STAT_AREA]]


def choose_box(boxes: list[IntBox], areas: list[int], multi: str) -> IntBox | None:
    """The one box the protocol scores: the largest region, the union of all, or None (``drop``) when the
    target has several. Ties between largest regions go to the first in scan order (deterministic)."""
    if not boxes:
        return ZERO_BOX
    if len(boxes) > 1 and multi == "drop":
        return None
    if multi == "union":
        return (
            min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes),
        )  # fmt: skip
    return boxes[int(np.argmax(areas))]


def mask_component_box(mask: np.ndarray) -> tuple[IntBox, int]:
    """(box of the largest 8-connected component, number of components); the zero box for an empty mask."""
    boxes, areas = mask_regions(mask)
    return choose_box(boxes, areas, "largest") or ZERO_BOX, len(boxes)


def _union_mask(t: Target, width: int, height: int, cat: str) -> np.ndarray:
    union = np.zeros((height, width), dtype=bool)
    for path in (t.mask, *t.more_masks):
        if path is None:
            continue
        m = load_mask(path, nonzero=t.nonzero)
        if m.shape != (height, width):
            console.warn(
                f"{cat}: mask {path.name} is {m.shape[1]}x{m.shape[0]}, image {width}x{height}; resized"
            )
            m = cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        union |= m
    return union


def target_regions(t: Target, width: int, height: int, cat: str) -> tuple[list[IntBox], list[int]]:
    """Defect regions of a target: annotated boxes clipped to the image (degenerate ones dropped), else the
    connected components of the union of its mask files; none for a normal target."""
    if t.boxes is not None:
        kept = []
        for x1, y1, x2, y2 in t.boxes:
            b = (max(0, x1), max(0, y1), min(width, x2), min(height, y2))
            if b[2] > b[0] and b[3] > b[1]:
                kept.append(b)
        return kept, [(b[2] - b[0]) * (b[3] - b[1]) for b in kept]
    if t.mask is None:
        return [], []
    return mask_regions(_union_mask(t, width, height, cat))


def target_box(
    t: Target, width: int, height: int, cat: str, multi: str = "largest"
) -> tuple[IntBox | None, int]:
    """(the record's box under the multi-defect policy, or None to drop the target; the region count)."""
    boxes, areas = target_regions(t, width, height, cat)
    return choose_box(boxes, areas, multi), len(boxes)


def record_id(cat: str, root_of_cat: Path, p: Path) -> str:
    try:
        rel = p.relative_to(root_of_cat).with_suffix("")
    except ValueError:
        rel = Path(p.stem)
    return f"{cat}/{rel.as_posix()}"
