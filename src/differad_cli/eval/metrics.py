"""The paper's evaluation metrics (IV-A; docs/formats.md "metrics.json"), one definition used by eval,
training and bench.

Per sample: an anomalous target scores IoU(pred, gt) (0 when the prediction is invalid, missing or the zero
box); a normal target scores 1 when the prediction is the zero box, else 0. From those:

- ``miou`` / ``miou_ano`` / ``miou_nor``: mean score over all / anomalous / normal samples (``None`` when the
  group has no such sample);
- ``acc_<t>``: share of samples whose score >= t;
- ``f1_<t>`` (detection F1): TP = anomalous samples with a non-zero prediction of IoU >= t,
  precision = TP / #non-zero predictions, recall = TP / #anomalous samples;
- ``image_precision`` / ``image_recall`` / ``image_f1``: a valid non-zero prediction flags "anomalous";
- ``n``, ``n_ano``, ``n_nor``, ``invalid`` (unparsable or missing predictions), ``missing`` (no prediction).

Key names carry the threshold as written by ``f"{t:g}"``: ``acc_0.3``/``f1_0.3`` by default, ``acc_0.5``/
``f1_0.5`` with ``iou_threshold=0.5``. Ratios with an empty denominator are 0.0 (scikit-learn's
``zero_division=0``). Everything is vectorized over samples, so the paper's 13k test set scores in
milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from differad_cli.core.boxes import iou_many
from differad_cli.core.records import Pair, Prediction

COUNT_KEYS = ("n", "n_ano", "n_nor", "invalid", "missing")


def metric_keys(iou_threshold: float = 0.3) -> tuple[str, ...]:
    """The keys of one metrics block, in report order."""
    t = f"{iou_threshold:g}"
    return (
        "n", "n_ano", "n_nor", f"acc_{t}", f"f1_{t}", "miou", "miou_ano", "miou_nor",
        "image_precision", "image_recall", "image_f1", "invalid", "missing",
    )  # fmt: skip


@dataclass
class SampleScores:
    """Per-sample arrays (aligned with the pairs) that every aggregate derives from."""

    ids: list[str]
    label: np.ndarray  # 1 anomalous ground truth
    valid: np.ndarray  # parsable prediction present
    missing: np.ndarray  # no prediction at all
    flagged: np.ndarray  # valid non-zero prediction ("anomalous" at image level)
    iou: np.ndarray  # IoU with the ground truth (0 for normal targets)
    score: np.ndarray  # the per-sample metric score (IoU, or the normal-sample 0/1)
    pred_box: np.ndarray  # (N, 4) predicted boxes in target pixels (zero when invalid)


def sample_scores(pairs: list[Pair], preds: Mapping[str, Prediction]) -> SampleScores:
    """Per-sample scores; a pair without a prediction counts as invalid.

    The rules for a prediction record's box, vectorized: corners ordered and clipped to the target image;
    the zero box stays; a box that is degenerate (or emptied by clipping) makes the prediction invalid.
    """
    n = len(pairs)
    gt = np.empty((n, 4), dtype=np.float64)
    raw = np.zeros((n, 4), dtype=np.float64)
    size = np.empty((n, 2), dtype=np.float64)
    label = np.empty(n, dtype=bool)
    valid = np.zeros(n, dtype=bool)
    missing = np.zeros(n, dtype=bool)
    for i, pair in enumerate(pairs):
        gt[i] = pair.box
        size[i] = (pair.width, pair.height)
        label[i] = pair.label == 1
        p = preds.get(pair.id)
        if p is None:
            missing[i] = True
        elif p.valid:
            valid[i] = True
            raw[i] = p.box
    zero = ~raw.any(axis=1)
    lo = np.minimum(raw[:, :2], raw[:, 2:]).clip(0.0, size)
    hi = np.maximum(raw[:, :2], raw[:, 2:]).clip(0.0, size)
    pb = np.concatenate([lo, hi], axis=1)
    valid &= zero | (hi > lo).all(axis=1)
    pb[~valid | zero] = 0.0
    nonzero = pb.any(axis=1)
    flagged = valid & nonzero
    iou = np.where(label & flagged, iou_many(pb, gt), 0.0)
    score = np.where(label, iou, (valid & ~nonzero).astype(np.float64))
    return SampleScores([p.id for p in pairs], label, valid, missing, flagged, iou, score, pb)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def aggregate(s: SampleScores, mask: np.ndarray | None = None, *, iou_threshold: float = 0.3) -> dict:
    """One metrics block over the samples selected by ``mask`` (all when None)."""
    m = np.ones(len(s.ids), dtype=bool) if mask is None else mask
    label, score, flagged = s.label[m], s.score[m], s.flagged[m]
    n, n_ano = int(m.sum()), int(label.sum())
    n_nor = n - n_ano
    tp_det = int((label & flagged & (s.iou[m] >= iou_threshold)).sum())
    n_flag = int(flagged.sum())
    tp_img = int((label & flagged).sum())
    det_p, det_r = _ratio(tp_det, n_flag), _ratio(tp_det, n_ano)
    img_p, img_r = _ratio(tp_img, n_flag), _ratio(tp_img, n_ano)
    t = f"{iou_threshold:g}"
    return {
        "n": n,
        "n_ano": n_ano,
        "n_nor": n_nor,
        f"acc_{t}": _ratio(int((score >= iou_threshold).sum()), n),
        f"f1_{t}": _f1(det_p, det_r),
        "miou": float(score.mean()) if n else 0.0,
        "miou_ano": float(score[label].mean()) if n_ano else None,
        "miou_nor": float(score[~label].mean()) if n_nor else None,
        "image_precision": img_p,
        "image_recall": img_r,
        "image_f1": _f1(img_p, img_r),
        "invalid": int((~s.valid[m]).sum()),
        "missing": int(s.missing[m].sum()),
    }


def _groups(names: Iterable[str | None]) -> dict[str, np.ndarray]:
    arr = np.array([("" if v is None else v) for v in names], dtype=object)
    out: dict[str, np.ndarray] = {}
    for name in sorted(set(arr.tolist())):
        if name != "":
            out[name] = arr == name
    return out


def category_mean(blocks: list[dict]) -> dict:
    """The unweighted mean over categories of their metric blocks (the paper's "(Avg.)" rows): ratios
    averaged (a None, e.g. ``miou_nor`` of a category without normal samples, is left out), counts summed,
    ``categories`` the number averaged."""
    out: dict = {"categories": len(blocks)}
    for key in blocks[0]:
        values = [b[key] for b in blocks if b.get(key) is not None]
        if key in COUNT_KEYS:
            out[key] = int(sum(values))
        else:
            out[key] = float(np.mean(values)) if values else None
    return out


def _subset_means(s: SampleScores, pairs: list[Pair], iou_threshold: float) -> dict:
    """Per subset (and over all), the mean over its categories; only where subsets group whole categories
    (each category in one subset, as a benchmark recipe builds), else empty."""
    subset_of: dict[str, set[str | None]] = {}
    for p in pairs:
        subset_of.setdefault(p.category, set()).add(p.subset)
    if any(len(v) != 1 or None in v for v in subset_of.values()):
        return {}
    cats = _groups(p.category for p in pairs)
    blocks = {c: aggregate(s, m, iou_threshold=iou_threshold) for c, m in cats.items()}
    out = {
        sub: category_mean([blocks[c] for c in sorted(cats) if subset_of[c] == {sub}])
        for sub in sorted({next(iter(v)) for v in subset_of.values()})  # type: ignore[type-var]
    }
    out["all"] = category_mean([blocks[c] for c in sorted(cats)])
    return out


def score(pairs: list[Pair], preds: Mapping[str, Prediction], *, iou_threshold: float = 0.3) -> dict:
    """Metrics overall, per category and per subset (pairs without a subset join no subset row); where
    records carry them, per defect type (anomalous samples only) and the per-subset mean over categories."""
    s = sample_scores(pairs, preds)
    return score_samples(s, pairs, iou_threshold=iou_threshold)


def score_samples(s: SampleScores, pairs: list[Pair], *, iou_threshold: float = 0.3) -> dict:
    out = {
        "overall": aggregate(s, iou_threshold=iou_threshold),
        "per_category": {
            k: aggregate(s, m, iou_threshold=iou_threshold)
            for k, m in _groups(p.category for p in pairs).items()
        },
        "per_subset": {
            k: aggregate(s, m, iou_threshold=iou_threshold)
            for k, m in _groups(p.subset for p in pairs).items()
        },
        "iou_threshold": iou_threshold,
    }
    means = _subset_means(s, pairs, iou_threshold)
    if means:
        out["per_subset_category_mean"] = means
    if any(p.defect_type for p in pairs):
        out["per_defect_type"] = {
            k: aggregate(s, m, iou_threshold=iou_threshold)
            for k, m in _groups(p.defect_type if p.label == 1 else None for p in pairs).items()
        }
    return out
