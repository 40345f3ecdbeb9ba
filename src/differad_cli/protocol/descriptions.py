"""Cold-start difference descriptions built from what a record knows, so synthetic data needs no annotator.

The description says where the region is, how large it is, and how its appearance differs from the reference
inside the box (brightness, colour, texture) — the "difference perception" the cold start teaches.
"""

from __future__ import annotations

import math

import numpy as np

from differad_cli.core.boxes import area, center, is_zero
from differad_cli.core.coords import smart_resize
from differad_cli.core.records import Pair

NORMAL_TEXT = "The target image matches the reference image; there is no abnormal region."

_ROWS = ("upper", "middle", "lower")
_COLS = ("left", "centre", "right")
_CHANNELS = ("red", "green", "blue")


def region_name(box: tuple[int, int, int, int], width: int, height: int) -> str:
    """A 3x3-grid position: 'upper left', 'centre', 'middle right', ..."""
    cx, cy = center(box)
    row = _ROWS[min(2, int(3 * cy / max(height, 1)))]
    col = _COLS[min(2, int(3 * cx / max(width, 1)))]
    if row == "middle" and col == "centre":
        return "centre"
    if col == "centre":
        return {"upper": "top centre", "lower": "bottom centre"}[row]
    return f"{row} {col}"


def size_phrase(share: float) -> str:
    pct = 100.0 * share
    word = "tiny" if pct < 1 else "small" if pct < 5 else "medium-sized" if pct < 20 else "large"
    return f"{word} region covering about {pct:.0f}% of the image" if pct >= 1 else f"{word} region"


def _gradient_energy(gray: np.ndarray) -> float:
    if gray.shape[0] < 2 or gray.shape[1] < 2:
        return 0.0
    gx = np.diff(gray, axis=1)
    gy = np.diff(gray, axis=0)
    return float(np.abs(gx).mean() + np.abs(gy).mean())


def appearance_phrases(ref: np.ndarray, tgt: np.ndarray, box: tuple[int, int, int, int]) -> list[str]:
    """How the target differs from the reference inside ``box`` (both HxWx3 uint8, same size)."""
    x1, y1, x2, y2 = box
    r = ref[y1:y2, x1:x2].astype(np.float32)
    t = tgt[y1:y2, x1:x2].astype(np.float32)
    if r.size == 0 or r.shape != t.shape:
        return []
    diff = (t - r).reshape(-1, 3).mean(axis=0)
    lum = float(diff.mean())
    out: list[str] = []
    if lum > 8:
        out.append("the target is brighter than the reference")
    elif lum < -8:
        out.append("the target is darker than the reference")
    chroma = diff - lum
    k = int(np.argmax(np.abs(chroma)))
    if abs(float(chroma[k])) > 10:
        out.append(f"its colour shifts {'towards' if chroma[k] > 0 else 'away from'} {_CHANNELS[k]}")
    er, et = _gradient_energy(r.mean(axis=2)), _gradient_energy(t.mean(axis=2))
    if et > 1.3 * er + 1:
        out.append("its texture is rougher")
    elif er > 1.3 * et + 1:
        out.append("its texture is smoother")
    if not out:
        out.append("its surface structure changes subtly")
    return out


def describe(pair: Pair, ref: np.ndarray | None = None, tgt: np.ndarray | None = None) -> str:
    """The record's description; images (HxWx3 uint8) make it say how the region differs."""
    if not pair.is_anomalous or is_zero(pair.box):
        return NORMAL_TEXT
    share = area(pair.box) / float(pair.width * pair.height)
    text = (
        f"Compared with the reference, the target has a {size_phrase(share)} "
        f"in the {region_name(pair.box, pair.width, pair.height)}"
    )
    if ref is not None and tgt is not None and ref.shape == tgt.shape:
        text += "; in that region " + _join(appearance_phrases(ref, tgt, pair.box))
    return text + "."


def short_description(pair: Pair) -> str:
    """Only where and how large ("A medium-sized region, upper left."), or that nothing differs."""
    if not pair.is_anomalous or is_zero(pair.box):
        return "The images match."
    share = area(pair.box) / float(pair.width * pair.height)
    word = size_phrase(share).split(" region")[0]
    return f"A {word} region, {region_name(pair.box, pair.width, pair.height)}."


GRID_CELLS = 8  # at most this many scan digits per axis: the 8x8 learner's token grid, ~43 answer tokens
GRID_OVERLAP = 0.3  # share of a cell the box must cover for that row/column to count as differing


def _grid_span(lo: int, hi: int, size: int, cells: int) -> list[int]:
    step = size / cells
    span = [i for i in range(cells) if min(hi, (i + 1) * step) - max(lo, i * step) >= GRID_OVERLAP * step]
    return span or [min(cells - 1, int((lo + hi) / 2 // step))]  # a sliver: the cell holding its centre


def grid_scan(
    pair: Pair, rows: int = GRID_CELLS, cols: int | None = None
) -> tuple[str, tuple[int, int, int, int]]:
    """A row/column scan of a ``rows`` x ``cols`` grid ("y 01110000 x 00011000": which rows, then which
    columns hold the difference) and the box snapped to those cells (pixels; zero for a normal pair). One
    token per digit and one letter per axis keep the answer within 48 new tokens. ``cols`` defaults to
    ``rows``; train-cold passes the model's image-token grid (``token_grid``).

    Why: a ~1M-parameter model learns a per-row "does this row differ?" decision (one comparison of a few
    image tokens at fixed offsets from the digit) long before it learns to write the minimum and maximum of
    the changed positions as numbers; with the scan written first, the box is read off the scan
    (docs/learning.md). The snapped box is what the scan implies, so the two never disagree. Its cost:
    boxes under ~3 cells' area (about 20 px a side at 224 px on an 8x8 grid) can snap to below IoU 0.3 with
    the truth."""
    cols = rows if cols is None else cols
    if not pair.is_anomalous or is_zero(pair.box):
        return f"y {'0' * rows} x {'0' * cols}", (0, 0, 0, 0)
    x1, y1, x2, y2 = pair.box
    ys, xs = _grid_span(y1, y2, pair.height, rows), _grid_span(x1, x2, pair.width, cols)
    bits = lambda span, n: "".join("1" if i in span else "0" for i in range(n))  # noqa: E731
    sx, sy = pair.width / cols, pair.height / rows  # cell edges outward: a 1-px box stays inside its cell
    box = (
        math.floor(xs[0] * sx),
        math.floor(ys[0] * sy),
        math.ceil((xs[-1] + 1) * sx),
        math.ceil((ys[-1] + 1) * sy),
    )
    return f"y {bits(ys, rows)} x {bits(xs, cols)}", box


def token_grid(pair: Pair, resize: dict[str, int]) -> tuple[int, int]:
    """(rows, columns) of the scan for ``pair``: the model's image-token grid (the processor-resized image
    over the patch-merge factor), each side capped at GRID_CELLS. The 8x8 learner gets 8x8, the 4x4 demo
    learner 4x4 (one digit per token row either way); real models' larger grids are capped."""
    h, w = smart_resize(pair.height, pair.width, **resize)
    factor = resize.get("factor", 28)
    return min(GRID_CELLS, max(1, h // factor)), min(GRID_CELLS, max(1, w // factor))


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def description_for(pair: Pair, *, use_record: bool = True) -> str:
    """The record's own description when present, else one computed from the images."""
    if use_record and pair.description:
        return pair.description
    if not pair.is_anomalous:
        return NORMAL_TEXT
    from differad_cli.core.images import load_rgb

    ref, tgt = load_rgb(pair.ref), load_rgb(pair.tgt)
    return describe(pair, ref, tgt if tgt.shape == ref.shape else None)
