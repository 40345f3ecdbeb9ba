"""Constant-answer baselines: what a model scores without looking at the images.

A trained model has learned something only where it beats all of them on the same held-out pairs. Each
baseline gives every pair the same answer: "normal" (the zero box), the whole image, or the median box of the
anomalous training pairs (in each target's own pixel size, as fractions of the training images').
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from differad_cli.core.boxes import ZERO_BOX
from differad_cli.core.records import Pair, Prediction
from differad_cli.eval.metrics import score


def median_box_fractions(train: Sequence[Pair]) -> tuple[float, float, float, float] | None:
    """Median (x1, y1, x2, y2) of the anomalous training boxes as fractions of their image; None if none."""
    rows = [
        (p.box[0] / p.width, p.box[1] / p.height, p.box[2] / p.width, p.box[3] / p.height)
        for p in train
        if p.is_anomalous and p.width and p.height
    ]
    if not rows:
        return None
    med = np.median(np.asarray(rows, dtype=np.float64), axis=0)
    return (float(med[0]), float(med[1]), float(med[2]), float(med[3]))


def _scaled(frac: tuple[float, float, float, float], pair: Pair) -> tuple[int, int, int, int]:
    w, h = pair.width or 1, pair.height or 1
    x1, y1 = round(frac[0] * w), round(frac[1] * h)
    x2, y2 = max(x1 + 1, round(frac[2] * w)), max(y1 + 1, round(frac[3] * h))
    return (x1, y1, min(x2, w), min(y2, h))


def constant_baselines(
    train: Sequence[Pair], held: list[Pair], *, iou_threshold: float = 0.3
) -> dict[str, dict]:
    """Overall metrics of each constant answer on ``held``: name -> metrics block (eval's keys)."""
    answers: dict[str, tuple[float, float, float, float] | None] = {
        "always normal": None,
        "whole image": (0.0, 0.0, 1.0, 1.0),
    }
    med = median_box_fractions(train)
    if med is not None:
        answers["median training box"] = med
    out: dict[str, dict] = {}
    for name, frac in answers.items():
        preds = {p.id: Prediction(p.id, ZERO_BOX if frac is None else _scaled(frac, p), True) for p in held}
        out[name] = score(held, preds, iou_threshold=iou_threshold)["overall"]
    return out


def best_constant(baselines: dict[str, dict], key: str) -> tuple[str, float]:
    """The constant answer with the highest ``key`` (e.g. ``acc_0.3``) and its value."""
    name = max(baselines, key=lambda n: baselines[n].get(key) or 0.0)
    return name, float(baselines[name].get(key) or 0.0)
