"""Scoring prediction records against pairs, and writing an eval folder: metrics.json, scores.jsonl,
report.md (and pictures)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.errors import BadInput
from differad_cli.core.records import MAX_REPORTED, Pair, Prediction, write_jsonl
from differad_cli.eval.metrics import SampleScores, sample_scores, score_samples
from differad_cli.eval.report import format_markdown, write_pictures, write_text


def listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_REPORTED])
    return shown + (f" (and {len(items) - MAX_REPORTED} more)" if len(items) > MAX_REPORTED else "")


def check_predictions(
    pairs: list[Pair], preds: Iterable[Prediction] | Mapping[str, Prediction]
) -> dict[str, Prediction]:
    """Index predictions by id: duplicates are an error; unknown ids and missing pairs are warned about."""
    if isinstance(preds, Mapping):
        by_id = dict(preds)
    else:
        by_id, dups = {}, []
        for p in preds:
            if p.id in by_id:
                dups.append(p.id)
            by_id[p.id] = p
        if dups:
            raise BadInput(f"{len(dups)} duplicate prediction id(s): {listed(sorted(set(dups)))}")
    known = {p.id for p in pairs}
    unknown = sorted(set(by_id) - known)
    if unknown:
        console.warn(f"{len(unknown)} prediction(s) for ids not in the pairs were ignored: {listed(unknown)}")
    missing = [p.id for p in pairs if p.id not in by_id]
    if missing:
        console.warn(f"{len(missing)} pair(s) have no prediction and count as invalid: {listed(missing)}")
    return {k: v for k, v in by_id.items() if k in known}


def _sample_rows(pairs: list[Pair], s: SampleScores) -> Iterable[dict]:
    for i, pair in enumerate(pairs):
        yield {
            "id": pair.id,
            "category": pair.category,
            "subset": pair.subset,
            "defect_type": pair.defect_type,
            "label": pair.label,
            "box": list(pair.box),
            "pred": [int(v) for v in s.pred_box[i]],
            "valid": bool(s.valid[i]),
            "missing": bool(s.missing[i]),
            "iou": round(float(s.iou[i]), 6),
            "score": round(float(s.score[i]), 6),
        }


def pairs_fingerprint(pairs: Sequence[Pair]) -> str:
    """What a score is about: the pair ids with their ground truth. Runs compare only on the same pairs."""
    h = hashlib.sha256()
    for p in sorted(pairs, key=lambda p: p.id):
        h.update(json.dumps([p.id, list(p.box), p.label, p.category, p.subset]).encode())
    return h.hexdigest()[:16]


def evaluate(
    pairs: list[Pair],
    preds: Iterable[Prediction] | Mapping[str, Prediction],
    out_dir: str | Path,
    *,
    iou_threshold: float = 0.3,
    overlays: int = 0,
    notes: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Score, then write metrics.json, scores.jsonl, report.md, report.html (and pictures when
    ``overlays`` > 0)."""
    if not 0.0 < iou_threshold <= 1.0:
        raise BadInput(f"--iou-threshold must be in (0, 1], got {iou_threshold}")
    if not pairs:
        raise BadInput("no pairs to evaluate")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_id = check_predictions(pairs, preds)
    s = sample_scores(pairs, by_id)
    metrics = score_samples(s, pairs, iou_threshold=iou_threshold)
    metrics["pairs_fingerprint"] = pairs_fingerprint(pairs)
    if extra:
        metrics.update(extra)
    pictures = write_pictures(pairs, s, out, overlays) if overlays > 0 else []
    write_jsonl(out / "scores.jsonl", _sample_rows(pairs, s))
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    report = format_markdown(metrics, notes=notes)
    if pictures:
        report += "\n## Pictures\n\n" + "\n".join(f"![{p}]({p})" for p in pictures) + "\n"
    write_text(out / "report.md", report)
    from differad_cli.eval.html import write_html  # cv2 pictures: imported when a report is written

    write_html(out / "report.html", metrics, pairs, s, by_id, notes=notes, n_worst=overlays)
    return metrics
