"""Pictures for humans reviewing an evaluation: case overlays and an IoU histogram (cv2/numpy only).

Colours: ground truth green, prediction red. Small images are upscaled (nearest neighbour) so boxes and
captions stay legible.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from differad_cli.core.boxes import is_zero

GT_COLOR = (0, 200, 0)
PRED_COLOR = (230, 30, 30)
_MIN_SIDE = 256
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _rgb(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a[:, :, :3])


def _rect(
    img: np.ndarray, box: Sequence[float] | None, scale: float, color: tuple[int, int, int], t: int
) -> None:
    if box is None or is_zero(box):
        return
    x1, y1, x2, y2 = (round(v * scale) for v in box)
    if x2 <= x1 or y2 <= y1:
        return
    cv2.rectangle(img, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, t)


def draw_overlay(
    ref: np.ndarray,
    tgt: np.ndarray,
    gt_box: Sequence[float] | None,
    pred_box: Sequence[float] | None,
    *,
    caption: str = "",
) -> np.ndarray:
    """Reference beside target (RGB uint8); boxes (target pixels) drawn on the target; caption below."""
    ref, tgt = _rgb(ref), _rgb(tgt)
    h, w = tgt.shape[:2]
    scale = max(1, int(np.ceil(_MIN_SIDE / max(h, w)))) if max(h, w) < _MIN_SIDE else 1
    th, tw = h * scale, w * scale
    tgt_s = cv2.resize(tgt, (tw, th), interpolation=cv2.INTER_NEAREST) if scale > 1 else tgt.copy()
    rw = max(1, round(ref.shape[1] * th / ref.shape[0]))
    ref_s = cv2.resize(ref, (rw, th), interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA)
    thick = max(2, round(max(th, tw) / 150))
    _rect(tgt_s, gt_box, scale, GT_COLOR, thick)
    _rect(tgt_s, pred_box, scale, PRED_COLOR, thick)
    gap = np.full((th, 4, 3), 255, dtype=np.uint8)
    panel = np.concatenate([ref_s, gap, tgt_s], axis=1)
    if not caption:
        return panel
    font = max(0.4, panel.shape[1] / 1200)
    (_, text_h), base = cv2.getTextSize(caption, _FONT, font, 1)
    strip = np.full((text_h + base + 10, panel.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(strip, caption, (4, text_h + 5), _FONT, font, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([panel, strip], axis=0)


def iou_histogram(
    values: Sequence[float], *, bins: int = 10, title: str = "IoU", size: tuple[int, int] = (480, 320)
) -> np.ndarray:
    """A bar chart of values in [0, 1] (RGB uint8, ``size`` = (width, height))."""
    width, height = size
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    counts, _ = np.histogram(v, bins=bins, range=(0.0, 1.0))
    left, right, top, bottom = 44, 12, 28, 36
    pw, ph = width - left - right, height - top - bottom
    top_count = max(1, int(counts.max(initial=0)))
    bw = pw / bins
    for i, c in enumerate(counts):
        x1 = left + round(i * bw) + 1
        x2 = left + round((i + 1) * bw) - 1
        y1 = top + ph - round(ph * c / top_count)
        if c:
            cv2.rectangle(img, (x1, y1), (x2, top + ph), (70, 110, 200), -1)
    black = (0, 0, 0)
    cv2.line(img, (left, top + ph), (left + pw, top + ph), black, 1)
    cv2.line(img, (left, top), (left, top + ph), black, 1)
    for frac in (0.0, 0.5, 1.0):
        x = left + round(frac * pw)
        cv2.putText(img, f"{frac:g}", (x - 8, top + ph + 16), _FONT, 0.4, black, 1, cv2.LINE_AA)
    cv2.putText(img, str(top_count), (4, top + 8), _FONT, 0.4, black, 1, cv2.LINE_AA)
    cv2.putText(img, "0", (28, top + ph), _FONT, 0.4, black, 1, cv2.LINE_AA)
    cv2.putText(img, f"{title} (n={v.size})", (left, 18), _FONT, 0.5, black, 1, cv2.LINE_AA)
    return img
