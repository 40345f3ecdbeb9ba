"""What `differad eval` does: validate the inputs, then score predictions, anomaly maps, or a backend's
predictions (run first, resumable, into OUT/predictions.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

from differad_cli.core import console
from differad_cli.core.errors import BadInput, ImageError
from differad_cli.core.images import image_size
from differad_cli.core.io import check_out_dir
from differad_cli.core.records import Pair, read_pairs, read_predictions
from differad_cli.eval.config import EvalConfig
from differad_cli.eval.maps import evaluate_maps
from differad_cli.eval.score import evaluate
from differad_cli.predict.config import PredictOptions, resolve_backend

OWNED = (
    "metrics.json", "scores.jsonl", "report.md", "report.html", "predictions.jsonl", "iou_hist.png",
    "overlays",
)  # fmt: skip


def _is_eval_folder(out: Path) -> bool:
    """A folder an earlier `differad eval` wrote: its metrics.json is a JSON object."""
    try:
        return isinstance(json.loads((out / "metrics.json").read_text(encoding="utf-8")), dict)
    except (OSError, ValueError, RecursionError):
        return False


def run_eval(cfg: EvalConfig, backend: PredictOptions | None = None, *, force: bool = False) -> dict:
    """Validate the inputs, then score predictions, anomaly maps, or (``backend`` given) a backend's
    predictions, run first into OUT/predictions.jsonl (resumable)."""
    cfg.validate()
    if sum(x is not None for x in (cfg.pred, cfg.maps, backend)) != 1:
        raise BadInput("give exactly one of --pred PRED.jsonl, --maps DIR, or a backend (--backend/--model)")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; give a folder for metrics.json and report.md")
    # predictions.jsonl: with --pred it is (or may be) the input, never written; a backend's batch run checks
    # its own output file; only --maps writes it here
    owned = OWNED if cfg.maps is not None else tuple(n for n in OWNED if n != "predictions.jsonl")
    check_out_dir(out, owned, _is_eval_folder, force=force or (backend is not None and backend.force))
    pairs = read_pairs(cfg.pairs)
    warn_stale_sizes(pairs)
    notes = [f"pairs: {cfg.pairs} ({len(pairs)} records)"]
    pred = cfg.pred
    if backend is not None:
        from differad_cli.predict.run import predict_file  # torch and the backends only when used

        pred = out / "predictions.jsonl"
        predict_file(cfg.pairs, pred, backend, pairs=pairs)
        notes.append(
            f"backend: {resolve_backend(backend)}" + (f" ({backend.model})" if backend.model else "")
        )
    common = {"iou_threshold": cfg.iou_threshold, "overlays": cfg.overlays}
    if cfg.maps is not None:
        notes.append(f"maps: {cfg.maps}")
        metrics = evaluate_maps(
            pairs, cfg.maps, out, seed=cfg.seed, cal_fraction=cfg.cal_fraction, notes=notes, **common
        )
    else:
        assert pred is not None
        preds = read_predictions(pred)
        notes.append(f"predictions: {pred} ({len(preds)} records)")
        metrics = evaluate(pairs, preds, out, notes=notes, **common)
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
