"""`differad eval`: a thin layer over :func:`differad_cli.eval.run.run_eval`; options from ``EvalConfig``
and ``PredictOptions``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from differad_cli.cli.options import Command, config_options
from differad_cli.eval.config import EvalConfig
from differad_cli.predict.config import PredictOptions

HELP = (
    "Score predictions against pair records with the paper's metrics (Acc@0.3, F1@0.3, mIoU, image-level "
    "P/R/F1; overall, per category, per subset). Writes DIR/metrics.json, DIR/scores.jsonl and "
    "DIR/report.md, DIR/report.html; "
    "--overlays N adds pictures of the N worst cases and an IoU histogram. With --maps instead of --pred, "
    "anomaly maps from a non-LLM baseline (<id>.npy or 16-bit <id>.png) are turned into boxes: a threshold "
    "maximizing F1@0.3 is calibrated on a seeded 30% split, the largest connected component is "
    "boxed, and the "
    "other 70% is scored. Metric keys carry the threshold: acc_0.3/f1_0.3, or acc_0.5/f1_0.5 with "
    "--iou-threshold 0.5."
)


@config_options(EvalConfig, PredictOptions, exclude=("maps_out",))  # eval's --maps reads maps
def eval_command(
    cfg: EvalConfig,
    opts: PredictOptions,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics.json on stdout instead of tables.")
    ] = False,
) -> None:
    from differad_cli.eval.run import run_eval

    backend = opts if opts.backend or opts.model or opts.endpoint else None  # refused beside --pred/--maps
    if backend is None and (cfg.pred is not None or cfg.maps is not None):
        _refuse_unused_backend_options(opts)
    metrics = run_eval(cfg, backend, force=opts.force)
    if as_json:
        print(json.dumps(metrics, indent=2))
    else:
        from differad_cli.eval.report import format_tables

        print(format_tables(metrics), end="")


def _refuse_unused_backend_options(opts: PredictOptions) -> None:
    """Backend options given without a backend (--threshold beside --pred) would be ignored without a word."""
    from dataclasses import fields

    from differad_cli.core.errors import BadInput
    from differad_cli.core.options import default_of

    unused = [
        "--" + f.name.replace("_", "-")
        for f in fields(PredictOptions)
        if f.name not in ("seed", "force") and getattr(opts, f.name) != default_of(f)
    ]
    if unused:
        raise BadInput(
            f"{', '.join(unused)}: backend option(s) without a backend; with --pred or --maps the boxes are "
            "already made (drop them, or score a backend with --backend instead of --pred/--maps)"
        )


COMMANDS = (
    Command(
        "eval",
        eval_command,
        examples=(
            "differad eval --pairs data/pairs.jsonl --pred runs/pred.jsonl --out runs/eval --overlays 20",
            "differad eval --pairs data/pairs.jsonl --maps patchcore_maps/ --out runs/patchcore --seed 0",
            "differad eval --pairs pairs.jsonl --pred pred.jsonl --out runs/eval --iou-threshold 0.5 --json",
            "differad eval --pairs data/test/pairs.jsonl --backend hf --model runs/rl --out runs/eval-rl",
            "differad eval --pairs test.jsonl --endpoint http://127.0.0.1:8000/v1 --model qwen3-vl --out q3",
        ),
        help=HELP,
    ),
)
