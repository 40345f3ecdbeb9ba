"""Pictures for humans: a pair with its boxes (``draw_overlay``) and histograms with titled axes.

One function draws every pair picture (eval's cases, ``predict --overlay``, the demo), so they read alike:
panels labelled "reference" and "target", the target at least 384 px on its long side (small images are
upscaled with nearest neighbour so pixels stay honest), ground truth green, prediction red, a legend, and an
optional caption. cv2/numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from differad_cli.core.boxes import is_zero

GT_COLOR = (0, 170, 0)
PRED_COLOR = (230, 30, 30)
MIN_SIDE = 384
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK = (0, 0, 0)


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


def _text_strip(width: int, items: Sequence[tuple[str, tuple[int, int, int]]], font: float) -> np.ndarray:
    """One line of coloured text items on white, left to right (the labels row, the legend)."""
    (_, text_h), base = cv2.getTextSize("Ag", _FONT, font, 1)
    strip = np.full((text_h + base + 12, width, 3), 255, dtype=np.uint8)
    x = 6
    for text, color in items:
        cv2.putText(strip, text, (x, text_h + 6), _FONT, font, color, 1, cv2.LINE_AA)
        x += cv2.getTextSize(text, _FONT, font, 1)[0][0] + 18
    return strip


def _fit_caption(caption: str, width: int, font: float) -> str:
    """Cut ``caption`` to fit ``width`` (cv2's font has no "…": three dots)."""
    cut = caption
    while cut and cv2.getTextSize(cut, _FONT, font, 1)[0][0] > width - 12:
        cut = cut[:-4] + "..."
    return cut


def draw_overlay(
    ref: np.ndarray,
    tgt: np.ndarray,
    gt_box: Sequence[float] | None,
    pred_box: Sequence[float] | None,
    *,
    caption: str = "",
) -> np.ndarray:
    """Reference beside target (RGB uint8), labelled; boxes (target pixels) drawn on the target; a legend
    naming the boxes that are shown; ``caption`` below (cut to the picture's width)."""
    ref, tgt = _rgb(ref), _rgb(tgt)
    h, w = tgt.shape[:2]
    scale = int(np.ceil(MIN_SIDE / max(h, w))) if max(h, w) < MIN_SIDE else 1
    th, tw = h * scale, w * scale
    tgt_s = cv2.resize(tgt, (tw, th), interpolation=cv2.INTER_NEAREST) if scale > 1 else tgt.copy()
    rw = max(1, round(ref.shape[1] * th / ref.shape[0]))
    ref_s = cv2.resize(ref, (rw, th), interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA)
    thick = max(2, round(max(th, tw) / 150))
    _rect(tgt_s, gt_box, scale, GT_COLOR, thick)
    _rect(tgt_s, pred_box, scale, PRED_COLOR, thick)
    gap = np.full((th, 6, 3), 255, dtype=np.uint8)
    panel = np.concatenate([ref_s, gap, tgt_s], axis=1)
    font = max(0.5, min(0.9, panel.shape[1] / 1100))
    labels = np.concatenate(
        [_text_strip(rw + 6, [("reference", _BLACK)], font), _text_strip(tw, [("target", _BLACK)], font)],
        axis=1,
    )
    legend_items = []
    if gt_box is not None:
        legend_items.append(("ground truth" + (" (normal)" if is_zero(gt_box) else ""), GT_COLOR))
    if pred_box is not None:
        legend_items.append(("prediction" + (" (normal)" if is_zero(pred_box) else ""), PRED_COLOR))
    rows = [labels, panel]
    if legend_items:
        rows.append(_text_strip(panel.shape[1], legend_items, font))
    if caption:
        rows.append(
            _text_strip(panel.shape[1], [(_fit_caption(caption, panel.shape[1], font), _BLACK)], font)
        )
    return np.concatenate(rows, axis=0)


def bar_chart(
    values: Sequence[float],
    labels: Sequence[str],
    *,
    title: str,
    x_title: str,
    y_title: str,
    size: tuple[int, int] = (560, 360),
    y_max: float | None = None,
) -> np.ndarray:
    """Bars with a title and titled axes (RGB uint8, ``size`` = (width, height))."""
    width, height = size
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 58, 14, 32, 52
    pw, ph = width - left - right, height - top - bottom
    vals = np.asarray(values, dtype=np.float64)
    top_v = y_max if y_max is not None else max(1.0, float(vals.max(initial=0.0)))
    bw = pw / max(1, len(vals))
    for i, v in enumerate(vals):
        x1, x2 = left + round(i * bw) + 1, left + round((i + 1) * bw) - 1
        y1 = top + ph - round(ph * min(v, top_v) / top_v)
        if v > 0:
            cv2.rectangle(img, (x1, y1), (x2, top + ph), (70, 110, 200), -1)
    cv2.line(img, (left, top + ph), (left + pw, top + ph), _BLACK, 1)
    cv2.line(img, (left, top), (left, top + ph), _BLACK, 1)
    step = max(1, len(labels) // 10)
    for i in range(0, len(labels), step):
        x = left + round((i + 0.5) * bw) - 10
        cv2.putText(img, labels[i][:8], (x, top + ph + 16), _FONT, 0.38, _BLACK, 1, cv2.LINE_AA)
    top_text = f"{top_v:g}"
    tw = cv2.getTextSize(top_text, _FONT, 0.4, 1)[0][0]
    cv2.putText(img, top_text, (left - 6 - tw, top + 8), _FONT, 0.4, _BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, "0", (left - 14, top + ph), _FONT, 0.4, _BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, x_title, (left + pw // 2 - 40, height - 10), _FONT, 0.45, _BLACK, 1, cv2.LINE_AA)
    y_label = np.full((20, ph - 20, 3), 255, dtype=np.uint8)  # below the top tick, rotated into the margin
    cv2.putText(y_label, y_title, (4, 14), _FONT, 0.45, _BLACK, 1, cv2.LINE_AA)
    img[top + 20 : top + ph, 2:22] = cv2.rotate(y_label, cv2.ROTATE_90_COUNTERCLOCKWISE)
    cv2.putText(img, title, (left, 20), _FONT, 0.5, _BLACK, 1, cv2.LINE_AA)
    return img


def iou_histogram(
    values: Sequence[float], *, bins: int = 10, title: str = "IoU", size: tuple[int, int] = (560, 360)
) -> np.ndarray:
    """Histogram of IoU values in [0, 1]: x is the IoU, y the number of samples."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    counts, edges = np.histogram(v, bins=bins, range=(0.0, 1.0))
    labels = [f"{e:.1f}" for e in edges[:-1]]
    return bar_chart(
        counts.tolist(), labels, title=f"{title} (n={v.size})", x_title="IoU (bin start)",
        y_title="samples", size=size, y_max=float(max(1, int(counts.max(initial=0)))),
    )  # fmt: skip
