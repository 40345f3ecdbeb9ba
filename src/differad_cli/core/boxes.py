"""Box helpers. A box is (x1, y1, x2, y2) in one coordinate system, x2/y2 exclusive; (0, 0, 0, 0) means
"no anomaly".

Records always hold target-image pixels; the model-facing systems (0-1000 normalized, pixels of the
processor-resized image) exist only at the prompt/answer boundary (see ``coords``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]
IntBox = tuple[int, int, int, int]
ZERO_BOX: IntBox = (0, 0, 0, 0)


def is_zero(box: Sequence[float] | None) -> bool:
    return box is not None and all(v == 0 for v in box)


def area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def center(box: Sequence[float]) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)


def diag(box: Sequence[float]) -> float:
    return math.hypot(box[2] - box[0], box[3] - box[1])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Plain IoU; degenerate boxes (zero area, the zero box included) overlap nothing."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def iou_many(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two (N, 4) arrays, vectorized (same semantics as :func:`iou`)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    iy = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.where((ix > 0) & (iy > 0), ix * iy, 0.0)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def mask_box(mask: np.ndarray) -> IntBox:
    """Tight box of the non-zero pixels of a 2-D mask (exclusive x2/y2); the zero box when empty."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.any(axis=2)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return ZERO_BOX
    cols = np.flatnonzero(m.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def clip_box(box: Sequence[float], width: float, height: float) -> Box:
    x1, y1, x2, y2 = box
    return (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )


def order_box(box: Sequence[float]) -> Box:
    """Swap reversed corners so that x1 <= x2 and y1 <= y2."""
    x1, y1, x2, y2 = box
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def round_box(box: Sequence[float]) -> IntBox:
    return (round(box[0]), round(box[1]), round(box[2]), round(box[3]))


def scale_box(box: Sequence[float], sx: float, sy: float) -> Box:
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def outward_box(box: Sequence[float], width: int, height: int) -> IntBox:
    """Integer box covering ``box`` (floor x1/y1, ceil x2/y2), clipped to the frame and at least one unit wide
    and high: a thin ground-truth box never collapses into a degenerate or zero box when scaled down."""
    eps = 1e-9
    x1 = min(max(math.floor(box[0] + eps), 0), width - 1)
    y1 = min(max(math.floor(box[1] + eps), 0), height - 1)
    x2 = min(max(math.ceil(box[2] - eps), x1 + 1), width)
    y2 = min(max(math.ceil(box[3] - eps), y1 + 1), height)
    return (x1, y1, x2, y2)


def to_1000(box: Sequence[float], width: int, height: int) -> IntBox:
    """Target pixels -> integers normalized to 0-1000 (Qwen2-VL / Qwen3-VL convention), rounded outward."""
    if is_zero(box):
        return ZERO_BOX
    return outward_box(scale_box(box, 1000.0 / width, 1000.0 / height), 1000, 1000)


def from_1000(box: Sequence[float], width: int, height: int) -> IntBox:
    """0-1000 normalized -> target pixels (rounded, clipped to the image)."""
    if is_zero(box):
        return ZERO_BOX
    return round_box(clip_box(scale_box(box, width / 1000.0, height / 1000.0), width, height))


def to_resized(box: Sequence[float], width: int, height: int, rwidth: int, rheight: int) -> IntBox:
    """Target pixels -> pixels of the processor-resized image (Qwen2.5-VL convention), rounded outward."""
    if is_zero(box):
        return ZERO_BOX
    return outward_box(scale_box(box, rwidth / width, rheight / height), rwidth, rheight)


def from_resized(box: Sequence[float], width: int, height: int, rwidth: int, rheight: int) -> IntBox:
    """Pixels of the processor-resized image -> target pixels (rounded, clipped)."""
    if is_zero(box):
        return ZERO_BOX
    return round_box(clip_box(scale_box(box, width / rwidth, height / rheight), width, height))
