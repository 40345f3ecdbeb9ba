"""What `differad eval` does: validate the inputs, then score predictions, anomaly maps, or a backend's
predictions (run first, resumable, into OUT/predictions.jsonl)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.errors import BadInput, ImageError
from differad_cli.core.images import image_size
from differad_cli.core.records import Pair, read_pairs, read_predictions
from differad_cli.eval.maps import evaluate_maps
from differad_cli.eval.score import evaluate


def run_eval(
    pairs_path: Path,
    out: Path,
    *,
    pred: Path | None = None,
    maps: Path | None = None,
    backend: Any = None,
    iou_threshold: float = 0.3,
    overlays: int = 0,
    cal_fraction: float = 0.3,
    seed: int = 0,
) -> dict:
    """Validate the inputs, then score predictions, anomaly maps, or a backend's predictions.

    ``backend`` (a ``PredictOptions``) runs prediction first into OUT/predictions.jsonl (resumable).
    """
    if sum(x is not None for x in (pred, maps, backend)) != 1:
        raise BadInput("give exactly one of --pred PRED.jsonl, --maps DIR, or a backend (--backend/--model)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; give a folder for metrics.json and report.md")
    pairs = read_pairs(pairs_path)
    warn_stale_sizes(pairs)
    notes = [f"pairs: {pairs_path} ({len(pairs)} records)"]
    if backend is not None:
        from differad_cli.predict.run import predict_file, resolve_backend  # torch only when used

        pred = Path(out) / "predictions.jsonl"
        predict_file(pairs_path, pred, backend)
        notes.append(
            f"backend: {resolve_backend(backend)}" + (f" ({backend.model})" if backend.model else "")
        )
    if maps is not None:
        metrics = evaluate_maps(
            pairs, maps, out, seed=seed, cal_fraction=cal_fraction, iou_threshold=iou_threshold,
            overlays=overlays, notes=[*notes, f"maps: {maps}"],
        )  # fmt: skip
    else:
        assert pred is not None
        preds = read_predictions(pred)
        metrics = evaluate(
            pairs, preds, out, iou_threshold=iou_threshold, overlays=overlays,
            notes=[*notes, f"predictions: {pred} ({len(preds)} records)"],
        )  # fmt: skip
    console.info(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return metrics


def warn_stale_sizes(pairs: list[Pair]) -> None:
    """Boxes are scored in the record's width x height while predictions come from the real image: say so
    when a target on disk no longer has the size its record states (a stale manifest)."""
    stale = []
    for p in pairs:
        try:
            if p.tgt.is_file() and image_size(p.tgt) != (p.width, p.height):
                stale.append(p.id)
        except ImageError:
            continue
    if stale:
        shown = ", ".join(stale[:5]) + (f" (and {len(stale) - 5} more)" if len(stale) > 5 else "")
        console.warn(f"{len(stale)} target image(s) differ in size from their record: {shown}")
