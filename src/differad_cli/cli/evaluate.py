"""`differad eval`: a thin layer over ``differad_cli.eval.report`` (scoring lives there, importable)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from differad_cli.cli._backend import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    ApiKey,
    Backend,
    BatchSize,
    Concurrency,
    Device,
    DType,
    Endpoint,
    Family,
    MaxNewTokens,
    MaxPixels,
    MinArea,
    MinPixels,
    Model,
    Retries,
    Template,
    Threshold,
    Timeout,
    TrustRemoteCode,
    predict_options,
)
from differad_cli.cli._common import Quiet, Seed, Verbose, apply_verbosity, example
from differad_cli.core.errors import BadInput

HELP = (
    "Score predictions against pair records with the paper's metrics (Acc@0.3, F1@0.3, mIoU, image-level "
    "P/R/F1; overall, per category, per subset). Writes DIR/metrics.json, DIR/scores.jsonl and "
    "DIR/report.md; "
    "--overlays N adds pictures of the N worst cases and an IoU histogram. With --maps instead of --pred, "
    "anomaly maps from a non-LLM baseline (<id>.npy or 16-bit <id>.png) are turned into boxes: a threshold "
    "maximizing F1@0.3 is calibrated on a seeded 30% split, the largest connected component is "
    "boxed, and the "
    "other 70% is scored. Metric keys carry the threshold: acc_0.3/f1_0.3, or acc_0.5/f1_0.5 with "
    "--iou-threshold 0.5."
)


def eval_command(
    pairs: Annotated[Path, typer.Option("--pairs", help="Pair manifest (JSONL) with the ground truth.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for metrics.json, report.md, pictures.")],
    pred: Annotated[
        Path | None, typer.Option("--pred", help="Prediction records (JSONL) from `differad predict`.")
    ] = None,
    maps: Annotated[
        Path | None, typer.Option("--maps", help="Folder of anomaly maps named <id>.npy / <id>.png.")
    ] = None,
    iou_threshold: Annotated[
        float, typer.Option("--iou-threshold", help="IoU threshold of Acc@t and F1@t.", min=0.0, max=1.0)
    ] = 0.3,
    overlays: Annotated[
        int,
        typer.Option("--overlays", help="Write overlays of the N worst cases and an IoU histogram.", min=0),
    ] = 0,
    backend: Backend = None,
    model: Model = None,
    template: Template = "differad",
    threshold: Threshold = None,
    min_area: MinArea = None,
    batch_size: BatchSize = 4,
    max_new_tokens: MaxNewTokens = 256,
    device: Device = None,
    dtype: DType = None,
    trust_remote_code: TrustRemoteCode = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
    family: Family = "qwen3_vl",
    timeout: Timeout = 60.0,
    retries: Retries = 3,
    concurrency: Concurrency = 4,
    min_pixels: MinPixels = DEFAULT_MIN_PIXELS,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    cal_fraction: Annotated[
        float, typer.Option("--cal-fraction", help="With --maps: share of pairs used to calibrate.")
    ] = 0.3,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics.json on stdout instead of tables.")
    ] = False,
    seed: Seed = 0,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    apply_verbosity(quiet, verbose)
    opts = None
    if backend or model or endpoint:  # run_eval refuses it beside --pred/--maps
        opts = predict_options(
            backend=backend, model=model, template=template, batch_size=batch_size,
            max_new_tokens=max_new_tokens, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
            endpoint=endpoint, api_key=api_key, family=family, timeout=timeout, retries=retries,
            concurrency=concurrency, threshold=threshold, min_area=min_area, seed=seed,
            min_pixels=min_pixels, max_pixels=max_pixels,
        )  # fmt: skip
    metrics = run_eval(
        pairs, out, pred=pred, maps=maps, backend=opts, iou_threshold=iou_threshold, overlays=overlays,
        cal_fraction=cal_fraction, seed=seed,
    )  # fmt: skip
    if as_json:
        print(json.dumps(metrics, indent=2))
    else:
        from differad_cli.eval.report import format_tables

        print(format_tables(metrics), end="")


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
    from differad_cli.core import console
    from differad_cli.core.records import read_pairs, read_predictions
    from differad_cli.eval.report import evaluate, evaluate_maps

    pairs = read_pairs(pairs_path)
    warn_stale_sizes(pairs)
    notes = [f"pairs: {pairs_path} ({len(pairs)} records)"]
    if backend is not None:
        from differad_cli.predict.run import predict_file, resolve_backend

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


def warn_stale_sizes(pairs: list) -> None:
    """Boxes are scored in the record's width x height while predictions come from the real image: say so
    when a target on disk no longer has the size its record states (a stale manifest)."""
    from differad_cli.core import console
    from differad_cli.core.errors import ImageError
    from differad_cli.core.images import image_size

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


def register(app: typer.Typer) -> None:
    app.command(
        "eval",
        help=HELP,
        epilog=example(
            "differad eval --pairs data/pairs.jsonl --pred runs/pred.jsonl --out runs/eval --overlays 20",
            "differad eval --pairs data/pairs.jsonl --maps patchcore_maps/ --out runs/patchcore --seed 0",
            "differad eval --pairs pairs.jsonl --pred pred.jsonl --out runs/eval --iou-threshold 0.5 --json",
            "differad eval --pairs data/test/pairs.jsonl --backend hf --model runs/rl --out runs/eval-rl",
            "differad eval --pairs test.jsonl --endpoint http://127.0.0.1:8000/v1 --model qwen3-vl --out q3",
        ),
    )(eval_command)
