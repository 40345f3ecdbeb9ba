"""What every dataset layout shares: the target/category records a layout yields, and mask boxes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from differad_cli.core import console
from differad_cli.core.boxes import ZERO_BOX, IntBox
from differad_cli.core.images import IMAGE_SUFFIXES, list_images, load_mask

MAX_LISTED = 10


@dataclass
class Target:
    path: Path
    subset: str | None
    mask: Path | None
    anomalous: bool  # expected from the folder (defect folder); the mask decides the final label


@dataclass
class Category:
    name: str
    pool: list[Path]
    targets: list[Target]
    self_ref: bool = False  # targets are the pool itself (split=train): never pick an image as its own ref


def images_in(folder: Path) -> list[Path]:
    return list_images(folder) if folder.is_dir() else []


def mask_for(mask_dir: Path, rel: Path) -> Path | None:
    """The mask of target ``rel`` in ``mask_dir``: same relative stem, optional ``_mask``, any format."""
    base = mask_dir / rel.parent
    for stem in (f"{rel.stem}_mask", rel.stem):
        for suffix in (rel.suffix, *IMAGE_SUFFIXES):
            p = base / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def warn_list(what: str, items: list[str]) -> None:
    if items:
        shown = ", ".join(items[:MAX_LISTED])
        more = f" (and {len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
        console.warn(f"{len(items)} {what}: {shown}{more}")


def category_dirs(root: Path, marker_sets: tuple[tuple[str, ...], ...]) -> list[Path]:
    def is_cat(d: Path) -> bool:
        return any(all((d / m).is_dir() for m in markers) for markers in marker_sets)

    if is_cat(root):
        return [root]
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and is_cat(d))


def unused_masks(mask_dir: Path, used: set[Path], cat: str) -> list[str]:
    return [f"{cat}/{p.relative_to(mask_dir.parent)}" for p in images_in(mask_dir) if p.resolve() not in used]


def mask_component_box(mask: np.ndarray) -> tuple[IntBox, int]:
    """(box of the largest 8-connected component, number of components); the zero box for an empty mask."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return ZERO_BOX, 0
    areas = stats[1:, cv2.CC_STAT_AREA]
    i = 1 + int(np.argmax(areas))  # ties: the first in scan order, deterministic
    x, y, w, h = (int(v) for v in stats[i, :4])
    return (x, y, x + w, y + h), n - 1


def target_box(t: Target, width: int, height: int, cat: str) -> tuple[IntBox, int]:
    if t.mask is None:
        return ZERO_BOX, 0
    m = load_mask(t.mask)
    if m.shape != (height, width):
        console.warn(
            f"{cat}: mask {t.mask.name} is {m.shape[1]}x{m.shape[0]}, image {width}x{height}; resized"
        )
        m = cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return mask_component_box(m)


def record_id(cat: str, root_of_cat: Path, p: Path) -> str:
    try:
        rel = p.relative_to(root_of_cat).with_suffix("")
    except ValueError:
        rel = Path(p.stem)
    return f"{cat}/{rel.as_posix()}"
