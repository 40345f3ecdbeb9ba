"""`differad eval`: a thin layer over ``differad_cli.eval.report`` (scoring lives there, importable)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

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
    from differad_cli.eval.run import run_eval

    metrics = run_eval(
        pairs, out, pred=pred, maps=maps, backend=opts, iou_threshold=iou_threshold, overlays=overlays,
        cal_fraction=cal_fraction, seed=seed,
    )  # fmt: skip
    if as_json:
        print(json.dumps(metrics, indent=2))
    else:
        from differad_cli.eval.report import format_tables

        print(format_tables(metrics), end="")


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
